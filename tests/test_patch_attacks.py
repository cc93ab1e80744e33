"""Hostile train.py changes and hostile patches: the hparams policy and apply_diff refuse them."""
import ast
import random
import re
import subprocess
import sys

import pytest

from swarm_node.assets import load_config
from swarm_node.research.hparams import write_block
from swarm_node.research.policy import check_change, diff_reason
from swarm_node.research.workspace import Patched, apply_diff, make_diff

from conftest import TOY_TARGET

SPACE = load_config("search_space")
SOURCE = (TOY_TARGET / "train.py").read_text()
HONEST = write_block(SOURCE, {"LEARNING_RATE": 0.004, "TIE_EMBEDDINGS": True})
DIFF = make_diff(SOURCE, HONEST)
HUNK = "@@ -4,10 +4,10 @@"
SEPARATORS = ["\x0c", "\x0b", "\r", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"]
ENCODINGS = ["utf-7", "raw_unicode_escape", "latin-1"]


def refused(evil: str) -> tuple[str, str]:
    by_check = check_change(SOURCE, evil, mode="hparams", space=SPACE)
    by_diff = diff_reason(SOURCE, make_diff(SOURCE, evil), SPACE)
    assert by_check is not None and by_diff is not None
    return by_check, by_diff


# --- encoding declarations: the bytes Python reads vs the str a parse sees ---------------------

@pytest.mark.parametrize("sep", SEPARATORS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("where", ["line 1", "line 2", "block line", "block comment"])
def test_a_coding_declaration_smuggled_behind_a_line_break_lookalike_is_refused(sep, encoding, where):
    decl = f"# -*- coding: {encoding} -*-"
    if where == "line 1":
        evil = decl + sep + SOURCE
    elif where == "line 2":
        evil = SOURCE.replace("\n\nSome", f"\n{sep}{decl}\nSome", 1)
    elif where == "block line":
        evil = SOURCE.replace('ACTIVATION = "gelu"', f'ACTIVATION = "gelu"{sep}{decl}')
    else:
        evil = SOURCE.replace("# kaiming is better", f"# kaiming is better{sep}{decl}")
    assert evil != SOURCE
    for reason in refused(evil):
        assert repr(sep) in reason and "only printable ASCII" in reason


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_plain_coding_declaration_is_refused_as_a_change_outside_the_block(encoding):
    evil = SOURCE.replace("\n\nSome", f"\n# coding: {encoding}\nSome", 1)  # line 2, no odd character
    by_check, by_diff = refused(evil)
    assert by_check == "line 2 outside the hyperparameter block changed (needs --policy code)" == by_diff
    assert "added or removed" in check_change(SOURCE, f"# coding: {encoding}\n" + SOURCE, mode="hparams",
                                              space=SPACE)


@pytest.mark.parametrize("evil, char", [
    ("\ufeff" + SOURCE, "\ufeff"),
    (SOURCE.replace("LEARNING_RATE = 0.001 ", "LEARNING_RATE =\t0.002"), "\t"),
    (SOURCE.replace('INIT = "normal"', 'INIT = "kaimíng"'), "í"),
    (SOURCE.replace('INIT = "normal"', 'INIT = "kaiming\x00"'), "\x00"),
    (SOURCE.replace("\n", "\r\n"), "\r"),
    (HONEST.replace("\n", "\r\n"), "\r"),
])
def test_bom_tab_non_ascii_nul_and_crlf_are_refused(evil, char):
    for reason in refused(evil):
        assert repr(char) in reason


def test_a_clean_change_on_a_dirty_parent_is_refused():
    dirty = SOURCE.replace("import math", "import math\x0c")
    reason = check_change(dirty, write_block(dirty, {"INIT": "kaiming"}).replace("\x0c", ""), mode="hparams",
                          space=SPACE)
    assert reason is not None


RUE_PAYLOAD = 'ACTIVATION = "gelu"  # \\u000aopen("pwned", "w").close()'


@pytest.mark.parametrize("make_evil", [
    lambda s: "# coding: raw_unicode_escape\r" + s,  # one line for a "\n" splitter, two for Python
    lambda s: "\x0c# coding: raw_unicode_escape\n" + s,  # \x0c is whitespace in a declaration
    lambda s: "# coding: raw_unicode_escape\n" + s,  # a plain comment line: no odd character at all
], ids=["cr", "formfeed", "newline"])
def test_end_to_end_the_encoding_attack_runs_code_and_the_policy_refuses_it(tmp_path, make_evil):
    evil = make_evil(SOURCE.replace('ACTIVATION = "gelu"', RUE_PAYLOAD))
    # a parse-based judge sees the same program: the payload is a comment in the decoded str
    assert ast.dump(ast.parse(evil)) == ast.dump(ast.parse(SOURCE))

    def run(text: str) -> bool:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "train.py").write_bytes(text.encode("utf-8"))
        subprocess.run([sys.executable, "train.py"], cwd=folder, capture_output=True, timeout=120)
        return (folder / "pwned").exists()

    assert not run(SOURCE)
    assert run(evil), "the payload should be real: python decodes the bytes with the declared codec"
    refused(evil)


# --- patches: exactly one text patch of train.py, applied exactly -----------------------------

def two_hunks() -> str:
    new = SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 0.002").replace(
        'print("num_steps:        1")', 'print("num_steps:        2")')
    diff = make_diff(SOURCE, new)
    assert diff.count("@@ -") == 2
    return diff


def overlapping_hunks() -> str:
    """The second hunk moved onto lines the first one covers."""
    diff = two_hunks()
    second = re.findall(r"@@ -\d+,(\d+) \+\d+,(\d+) @@", diff)[1]
    header = re.findall(r"@@ -\d+,\d+ \+\d+,\d+ @@", diff)[1]
    return diff.replace(header, f"@@ -8,{second[0]} +8,{second[1]} @@")


def swap_hunks(diff: str) -> str:
    head, first, second = diff.split("@@ -")
    return head + "@@ -" + second + "@@ -" + first


BAD_PATCHES = [
    ("diff --git a/train.py b/evil.py\nsimilarity index 90%\nrename from train.py\nrename to evil.py\n" + DIFF,
     "diff --git"),
    ("similarity index 90%\nrename from train.py\nrename to evil.py\n" + DIFF, "rename or copy"),
    ("rename from train.py\nrename to evil.py\n", "a rename"),
    ("copy from train.py\ncopy to evil.py\n" + DIFF, "a copy"),
    ("diff --git a/train.py b/train.py\nold mode 100644\nnew mode 100755\n", "diff --git"),
    ("old mode 100644\nnew mode 100755\n" + DIFF, "mode change"),
    ("index 1234567..89abcde 100644\n" + DIFF, "index"),
    ("new file mode 100644\n" + DIFF, "creating a file"),
    ("deleted file mode 100644\n" + DIFF, "deleting a file"),
    ("--- a/train.py\n+++ b/train.py\nGIT binary patch\nliteral 5\nMcmZ?\n\n", "binary patch"),
    ("Binary files a/train.py and b/train.py differ\n", "binary patch"),
    ("--- a/train.py\n+++ b/train.py\nBinary files a/train.py and b/train.py differ\n", "binary patch"),
    (DIFF + DIFF.replace("train.py", "prepare.py"), "second file"),
    (DIFF + DIFF, "second file"),
    (DIFF.replace("a/train.py", "a/../train.py"), "only train.py"),
    (DIFF.replace("b/train.py", "b/../train.py"), "only train.py"),
    (DIFF.replace("a/train.py", "a/x/../train.py"), "only train.py"),
    (DIFF.replace("a/train.py", "/etc/passwd"), "only train.py"),
    (DIFF.replace("a/train.py", "/dev/null"), "creating or deleting"),
    (DIFF.replace("b/train.py", "/dev/null"), "creating or deleting"),
    (DIFF.replace("train.py", "prepare.py"), "only train.py"),
    (DIFF.replace(HUNK, "@@ -4,11 +4,10 @@"), "fewer lines"),
    (DIFF.replace(HUNK, "@@ -4,9 +4,10 @@"), "more lines"),
    (DIFF.replace(HUNK, "@@ -4,10 +4,9 @@"), "more lines"),
    (DIFF.replace(HUNK, "@@ -4,999999999 +4,999999999 @@"), "truncated"),
    (DIFF.replace(HUNK, "@@ -4," + "9" * 5000 + " +4,10 @@"), "hunk header"),
    (DIFF.replace(HUNK, "@@ --4,10 +-4,10 @@"), "hunk header"),
    (DIFF.replace(HUNK, "@@ -4,10 +4,10 @@ def main():"), "hunk header"),
    (DIFF.replace(HUNK, "@@ -０,10 +4,10 @@"), "hunk header"),
    (DIFF.replace(HUNK, "@@ -0,10 +0,10 @@"), "start at 1"),
    (DIFF.replace(HUNK, "@@ -5,10 +5,10 @@"), "does not match"),  # an offset: no fuzz
    (DIFF.replace(HUNK, "@@ -4,10 +5,10 @@"), "disagrees"),
    (DIFF.replace(HUNK, "@@ -40,10 +40,10 @@"), "after the end"),
    (DIFF.replace(' """\n', ' """ \n', 1), "does not match"),  # fuzzed context
    (DIFF.replace('\n """\n', '\n\n', 1), "fewer lines"),  # a context line that lost its space
    (DIFF.replace("0.004      # best near 0.006\n", "0.004      # best near 0.006\n\\ No newline at end of file\n"),
     "not the last line"),
    (overlapping_hunks(), "overlaps"),
    (swap_hunks(two_hunks()), "overlaps or comes before"),
    ("--- a/train.py\n+++ b/train.py\n", "no hunks"),
    ("--- a/train.py\n+++ b/train.py\n@@ -0,0 +0,0 @@\n", "empty"),
    ("", "empty diff"),
    (DIFF[:-1], "does not end with a newline"),
    (DIFF[: len(DIFF) // 2] + "\n", ""),
    ("this is not a diff\n", "expected '--- a/train.py'"),
    ("--- a/train.py\n", "expected '--- a/train.py' then '+++ b/train.py'"),
    (DIFF + "garbage\n", "hunk header"),
    (DIFF + " trailing context\n", "more lines"),
]


@pytest.mark.parametrize("diff, reason", BAD_PATCHES)
def test_bad_patches_are_refused_with_a_reason(diff, reason):
    assert apply_diff(SOURCE, DIFF).source == HONEST  # the patches are built from a good one
    result = apply_diff(SOURCE, diff)
    assert isinstance(result, Patched) and not result.ok and result.source is None
    assert reason in result.error and "internal error" not in result.error
    assert diff_reason(SOURCE, diff, SPACE) is not None


def test_removed_lines_must_match_the_parent_exactly():
    diff = DIFF.replace("-LEARNING_RATE = 0.001", "-LEARNING_RATE = 0.0010")
    assert "line 7 of train.py does not match" in apply_diff(SOURCE, diff).error
    # the pre-check cannot know the parent: a parent with 0.0010 there would be root-shaped
    assert diff_reason(SOURCE, diff, SPACE) is None
    parent = SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = 0.0010")
    assert apply_diff(parent, diff).source == HONEST


def test_apply_diff_never_raises_on_fuzz():
    rng = random.Random(2024)
    alphabet = "@@ -+,0123456789\n\\ab/.\r\x0c\x85\u2028é\ud800"
    lines = DIFF.split("\n")
    for _ in range(3000):
        kind = rng.randrange(4)
        if kind == 0:
            diff = "".join(rng.choice(alphabet) for _ in range(rng.randrange(80)))
        elif kind == 1:
            diff = bytes(rng.randrange(256) for _ in range(rng.randrange(80))).decode("latin-1")
        elif kind == 2:
            diff = DIFF[: rng.randrange(len(DIFF) + 1)]
        else:
            mutated = list(lines)
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(mutated))
                op = rng.randrange(3)
                if op == 0:
                    del mutated[i]
                elif op == 1:
                    mutated.insert(i, rng.choice(mutated))
                else:
                    s = mutated[i]
                    j = rng.randrange(len(s) + 1)
                    mutated[i] = s[:j] + rng.choice(alphabet) + s[j + 1:]
            diff = "\n".join(mutated)
        result = apply_diff(SOURCE, diff)
        assert isinstance(result, Patched) and (result.source is None) != (result.error is None)
        assert result.ok or "internal error" not in result.error, (diff, result.error)
        reason = diff_reason(SOURCE, diff, SPACE)
        if reason is None and result.ok:  # the pre-check passed: the exact check agrees on a root parent
            assert check_change(SOURCE, result.source, mode="hparams", space=SPACE) is None
    assert isinstance(apply_diff(None, DIFF), Patched) and isinstance(apply_diff(SOURCE, None), Patched)


def test_with_the_root_as_parent_the_pre_check_and_the_exact_check_agree():
    rng = random.Random(5)
    lines = SOURCE.split("\n")
    alphabet = ' 0123456789.e-+"\'#=aXT\t\x0c\r\x85é()' + "123456789" * 3
    accepted = 0
    for _ in range(3000):
        edited = list(lines)
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(edited))
            if rng.random() < 0.7:
                i = rng.randrange(6, 12)  # mostly the block, where edits can be legal
            s = edited[i]
            j = rng.randrange(len(s) + 1)
            edited[i] = s[:j] + rng.choice(alphabet) * rng.randrange(2) + s[j + rng.randrange(2):]
        new = "\n".join(edited)
        if new == SOURCE:
            continue
        exact = check_change(SOURCE, new, mode="hparams", space=SPACE)
        pre = diff_reason(SOURCE, make_diff(SOURCE, new), SPACE)
        assert (exact is None) == (pre is None), (new, exact, pre)
        accepted += exact is None
    assert accepted > 10  # the loop does reach legal literal edits
