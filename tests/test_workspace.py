import random

from swarm_node.messages import state_hash
from swarm_node.research.workspace import Workspace, apply_diff, make_diff

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


def test_diffs_apply_back_to_the_same_state():
    new = BASE.replace("0.001", "0.004")
    diff = make_diff(BASE, new)
    assert diff.startswith("--- a/train.py\n+++ b/train.py\n@@ -4,7 +4,7 @@\n")
    patched = apply_diff(BASE, diff)
    assert patched.ok and patched.error is None and state_hash(patched.source) == state_hash(new)
    stale = apply_diff(BASE.replace("0.001", "0.5"), diff)
    assert not stale.ok and stale.source is None and "does not match" in stale.error
    assert not apply_diff(BASE, "this is not a diff\n").ok
    assert make_diff(BASE, BASE) == "" and not apply_diff(BASE, "").ok


def test_a_last_line_without_newline_is_marked_and_applied():
    diff = make_diff("a\nb", "a\nc\n")
    assert diff == ("--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n a\n-b\n"
                    "\\ No newline at end of file\n+c\n")
    assert apply_diff("a\nb", diff).source == "a\nc\n"
    assert not apply_diff("a\nb\n", diff).ok  # the old side's missing newline must match too
    assert apply_diff("x", make_diff("x", "")).source == ""
    assert apply_diff("", make_diff("", "y")).source == "y"


def test_only_newline_splits_lines():
    old, new = "a\rb\x0cc\n", "a\rb\x0cd\n"
    assert make_diff(old, new) == "--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,1 @@\n-a\rb\x0cc\n+a\rb\x0cd\n"
    assert apply_diff(old, make_diff(old, new)).source == new


def test_make_diff_and_apply_diff_round_trip_any_texts():
    rng = random.Random(1)
    alphabet = ["a", "b", " ", "+", "-", "@", "\\", "\n", "\n", "\n", "\r", "\r\n", "\x0c", "\x0b", "\x1c", "\x85",
                "\u2028", "\ufeff", "é", "\U0001f600", "\\ No newline at end of file", "--- a/train.py", "@@ -1 +1 @@"]
    for _ in range(1500):
        old = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        lines = old.split("\n")
        for _ in range(rng.randrange(1, 4)):  # a few line edits, so diffs have context and several hunks
            i = rng.randrange(len(lines) + 1)
            lines[i:i + rng.randrange(2)] = ["".join(rng.choice(alphabet[:-3]) for _ in range(rng.randrange(4)))]
        new = "\n".join(lines) if rng.random() < 0.8 else "".join(rng.choice(alphabet) for _ in range(30))
        diff = make_diff(old, new)
        if old == new:
            assert diff == ""
            continue
        patched = apply_diff(old, diff)
        assert patched.source == new, (old, new, diff, patched.error)
    long_old = "\n".join(f"line {i}" for i in range(500)) + "\n"
    long_new = long_old.replace("line 10\n", "line ten\n").replace("line 400\n", "")
    assert make_diff(long_old, long_new).count("@@ -") == 2
    assert apply_diff(long_old, make_diff(long_old, long_new)).source == long_new
