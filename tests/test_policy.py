import random

import pytest

from swarm_node.assets import load_config
from swarm_node.research.hparams import read_block, write_block
from swarm_node.research.policy import check_change, clean_text_reason, diff_reason
from swarm_node.research.workspace import apply_diff, make_diff

from conftest import REPO, TOY_TARGET

SPACE = load_config("search_space")
SOURCE = (TOY_TARGET / "train.py").read_text()
TINYGPT = (REPO / "experiments" / "tinygpt" / "train.py").read_text()


def check(new, mode="hparams"):
    return check_change(SOURCE, new, mode=mode, space=SPACE)


def test_a_literal_change_within_bounds_is_allowed():
    assert check(write_block(SOURCE, {"LEARNING_RATE": 0.003, "INIT": "kaiming"})) is None
    assert check(SOURCE) is None
    # the same value written differently is still only a literal
    assert check(SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 1e-3")) is None
    assert check(SOURCE.replace('INIT = "normal"', "INIT = 'normal'")) is None


@pytest.mark.parametrize("root", [SOURCE, TINYGPT], ids=["toy", "tinygpt"])
def test_honest_changes_pass_check_change_and_diff_reason_and_round_trip(root):
    rng = random.Random(7)
    block = read_block(root)
    for _ in range(20):
        names = rng.sample([n for n in block if n in SPACE], 3)
        changes = {n: rng.choice(SPACE[n].get("grid") or SPACE[n]["choices"]) for n in names}
        new = write_block(root, changes)
        assert check_change(root, new, mode="hparams", space=SPACE) is None
        if new != root:  # (equal texts have an empty diff, which is refused)
            diff = make_diff(root, new)
            assert diff_reason(root, diff, SPACE) is None
            assert apply_diff(root, diff).source == new


def test_both_targets_are_clean_text():
    assert clean_text_reason(SOURCE) is None
    assert clean_text_reason(TINYGPT) is None


@pytest.mark.parametrize("char, kind", [
    ("\r", "control"), ("\t", "control"), ("\x0c", "control"), ("\x0b", "control"), ("\x00", "control"),
    ("\x1c", "control"), ("\x1d", "control"), ("\x1e", "control"), ("\x1f", "control"), ("\x7f", "control"),
    ("\x85", "control"), ("\ufeff", "non-ASCII"), ("\u2028", "non-ASCII"), ("é", "non-ASCII"),
    ("\U0001f600", "non-ASCII"),
])
def test_clean_text_names_the_character_and_its_line(char, kind):
    reason = clean_text_reason(f"a = 1\nb = 2\nc = '{char}'\n")
    assert reason == f"line 3: {kind} character {char!r} (only printable ASCII and \\n are allowed)"
    assert clean_text_reason("".join(map(chr, range(0x20, 0x7f))) + "\n\n") is None


def test_comments_and_spacing_outside_the_block_are_refused():
    # a parse cannot see them, and a comment on line 1 or 2 can change how Python decodes the file
    assert "line 14 outside the hyperparameter block" in check(
        SOURCE.replace("import math", "import math  # for log"))
    assert "line 2 outside" in check(SOURCE.replace('\n\nSome', '\n# just a comment\nSome', 1))
    assert "line 14 outside" in check(SOURCE.replace("import math", "import  math"))


def test_code_outside_the_block_is_refused_unless_code_mode():
    evil = SOURCE.replace("import math", "import math\nimport os; os.system('echo owned')")
    assert "added or removed" in check(evil)
    assert check(evil, mode="code") is None
    same_count = SOURCE.replace("import math", "import os; os.system('echo owned')")
    assert check(same_count) == "line 14 outside the hyperparameter block changed (needs --policy code)"
    assert check(same_count, mode="code") is None


def test_out_of_bounds_wrong_type_and_unknown_choice_are_refused():
    assert "outside" in check(write_block(SOURCE, {"LEARNING_RATE": 5.0}))
    assert "not one of" in check(write_block(SOURCE, {"INIT": "orthogonal"}))
    assert "must stay a bool" in check(SOURCE.replace("TIE_EMBEDDINGS = False", "TIE_EMBEDDINGS = 0"))
    assert "must stay a float" in check(SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 1"))
    assert "not finite" in check(SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 1e999"))
    assert "not in the search space" in check(write_block(SOURCE, {"SLEEP_SECONDS": 5.0}))


@pytest.mark.parametrize("old, new", [
    ("LEARNING_RATE = 0.001      # best near 0.006", "LEARNING_RATE = 0.002      # best near 0.007"),
    ("LEARNING_RATE = 0.001      # best", "LEARNING_RATE = 0.001  # best"),  # spacing
    ("LEARNING_RATE = 0.001 ", "LEARNING_RATF = 0.001 "),  # another name
    ("LEARNING_RATE = 0.001 ", "LEARNING_RATE =0.002 "),  # only the text before the literal differs
    ("LEARNING_RATE = 0.001 ", "LEARNING_RATE = 0.002"),  # only the text after it differs
    ("LEARNING_RATE = 0.001 ", "LEARNING_RATE = 0.002;"),
    ("ACTIVATION = \"gelu\"", "ACTIVATION = \"gelu\" # coding: latin-1"),
    ("# --- end hyperparameters ---", "# --- end hyperparameters --- "),
    ("LEARNING_RATE = 0.001 ", "LEARNING_RATE = __import__('os').getpid()"),
    ("INIT = \"normal\"", "INIT = (\"normal\")"),
])
def test_only_the_literal_may_change_in_the_block(old, new):
    assert old in SOURCE
    evil = SOURCE.replace(old, new)
    reason = check(evil)
    assert reason is not None and "line" in reason
    assert diff_reason(SOURCE, make_diff(SOURCE, evil), SPACE) is not None


def test_names_added_or_removed_in_the_block_are_refused():
    added = SOURCE.replace("ACTIVATION = \"gelu\"", "ACTIVATION = \"gelu\"\nEXTRA = 1")
    assert "added or removed" in check(added)
    assert "adds or removes lines" in diff_reason(SOURCE, make_diff(SOURCE, added), SPACE)
    removed = SOURCE.replace("ACTIVATION = \"gelu\"\n", "")
    assert check(removed) is not None and diff_reason(SOURCE, make_diff(SOURCE, removed), SPACE) is not None


def test_syntax_errors_are_refused_in_every_mode():
    assert "does not parse" in check(SOURCE + "\ndef (:\n", mode="code")
    assert check(SOURCE + "\ndef (:\n") is not None
    with pytest.raises(ValueError):
        check(SOURCE, mode="anything")


def test_diff_reason_checks_lines_at_their_place_against_the_root():
    new = write_block(SOURCE, {"NORM": "rmsnorm"})
    diff = make_diff(SOURCE, new)
    assert diff_reason(SOURCE, diff, SPACE) is None
    # the same hunk moved one line down no longer matches the root there
    moved = diff.replace("@@ -6,7 +6,7 @@", "@@ -7,7 +7,7 @@")
    assert moved != diff and "line" in diff_reason(SOURCE, moved, SPACE)
    # a root line copied elsewhere (reordering code) is refused
    swapped = make_diff(SOURCE, SOURCE.replace("import math\nimport os", "import os\nimport math"))
    assert "outside the hyperparameter block" in diff_reason(SOURCE, swapped, SPACE)
    # values on added and context lines are checked against the root's types and bounds
    assert "outside" in diff_reason(SOURCE, make_diff(SOURCE, write_block(SOURCE, {"LEARNING_RATE": 0.9})), SPACE)
    bad_parent = write_block(SOURCE, {"INIT": "orthogonal"})
    from_bad = make_diff(bad_parent, write_block(bad_parent, {"NORM": "rmsnorm"}))
    assert "not one of" in diff_reason(SOURCE, from_bad, SPACE)
    assert "empty diff" in diff_reason(SOURCE, "", SPACE)
    # dropping the file's last newline changes no visible line but is not the target's shape
    assert "added or removed" in check(SOURCE[:-1])
    assert "not a line of the target" in diff_reason(SOURCE, make_diff(SOURCE, SOURCE[:-1]), SPACE)
