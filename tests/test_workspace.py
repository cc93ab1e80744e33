from swarm_node.research.workspace import Workspace, apply_diff, make_diff, merge3, state_hash

from conftest import TOY_TARGET

BASE = (TOY_TARGET / "train.py").read_text()


def test_experiments_are_commits_and_discards_reset(tmp_path):
    ws = Workspace(tmp_path / "ws")
    first = ws.create(TOY_TARGET, BASE)
    second = ws.commit(BASE.replace("0.001", "0.002"), "lr up")
    assert ws.log()[0].endswith("lr up") and first != second
    ws.reset_to(first)
    assert ws.read_train() == BASE and ws.head_commit() == first
    assert (tmp_path / "ws" / "prepare.py").is_file()


def test_three_way_merge_combines_independent_changes_and_detects_conflicts():
    ours = BASE.replace('INIT = "normal"', 'INIT = "kaiming"')
    theirs = BASE.replace('NORM = "layernorm"', 'NORM = "rmsnorm"')
    merged = merge3(BASE, ours, theirs)
    assert 'INIT = "kaiming"' in merged and 'NORM = "rmsnorm"' in merged
    clash = BASE.replace('INIT = "normal"', 'INIT = "xavier"')
    assert merge3(BASE, ours, clash) is None


def test_diffs_apply_back_to_the_same_state():
    new = BASE.replace("0.001", "0.004")
    diff = make_diff(BASE, new)
    assert state_hash(apply_diff(BASE, diff)) == state_hash(new)
    assert apply_diff(BASE.replace("0.001", "0.5"), diff) is None
    assert apply_diff(BASE, "this is not a diff") is None
