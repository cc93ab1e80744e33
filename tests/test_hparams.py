import pytest

from swarm_node.research.hparams import (END_MARKER, START_MARKER, format_literal, read_block, split_lines,
                                         write_block)

TRAIN_PY = f'''"""A tiny GPT."""
import torch

{START_MARKER}
LEARNING_RATE = 6e-4  # peak learning rate
WARMUP_STEPS = 100
WEIGHT_DECAY = 0.1    # AdamW

# architecture
N_LAYER = 4
DROPOUT = 0.0
INIT = "normal"  # normal | kaiming | xavier
NORM = 'layernorm'
TIE_EMBEDDINGS = True
{END_MARKER}

LEARNING_RATE_NOTE = "outside the block"


def main():
    print("val_bpb:", 1.0)
'''


def test_read_block_returns_typed_values_in_order():
    assert read_block(TRAIN_PY) == {
        "LEARNING_RATE": 6e-4, "WARMUP_STEPS": 100, "WEIGHT_DECAY": 0.1, "N_LAYER": 4,
        "DROPOUT": 0.0, "INIT": "normal", "NORM": "layernorm", "TIE_EMBEDDINGS": True,
    }
    values = read_block(TRAIN_PY)
    assert list(values) == ["LEARNING_RATE", "WARMUP_STEPS", "WEIGHT_DECAY", "N_LAYER", "DROPOUT",
                            "INIT", "NORM", "TIE_EMBEDDINGS"]
    assert type(values["DROPOUT"]) is float and type(values["TIE_EMBEDDINGS"]) is bool


def test_write_block_changes_only_the_literals():
    new = write_block(TRAIN_PY, {"LEARNING_RATE": 1e-3, "INIT": "kaiming", "NORM": "rmsnorm",
                                 "TIE_EMBEDDINGS": False, "N_LAYER": 6})
    assert "LEARNING_RATE = 0.001  # peak learning rate\n" in new
    assert 'INIT = "kaiming"  # normal | kaiming | xavier\n' in new  # keeps the quote style
    assert "NORM = 'rmsnorm'\n" in new
    assert "TIE_EMBEDDINGS = False\n" in new
    assert "N_LAYER = 6\n" in new
    assert read_block(new) == {**read_block(TRAIN_PY), "LEARNING_RATE": 1e-3, "INIT": "kaiming",
                               "NORM": "rmsnorm", "TIE_EMBEDDINGS": False, "N_LAYER": 6}
    changed = [(a, b) for a, b in zip(TRAIN_PY.splitlines(), new.splitlines()) if a != b]
    assert len(changed) == 5 and len(new.splitlines()) == len(TRAIN_PY.splitlines())


def test_write_block_round_trips_and_leaves_equal_values_as_written():
    assert write_block(TRAIN_PY, {}) == TRAIN_PY
    assert write_block(TRAIN_PY, read_block(TRAIN_PY)) == TRAIN_PY
    assert write_block(TRAIN_PY, {"LEARNING_RATE": 0.0006}) == TRAIN_PY  # same value, same text


def test_write_block_keeps_float_names_float_and_crlf_line_endings():
    new = write_block(TRAIN_PY, {"WEIGHT_DECAY": 0})
    assert "WEIGHT_DECAY = 0.0    # AdamW" in new and type(read_block(new)["WEIGHT_DECAY"]) is float
    crlf = TRAIN_PY.replace("\n", "\r\n")
    assert write_block(crlf, {"N_LAYER": 8}) == write_block(TRAIN_PY, {"N_LAYER": 8}).replace("\n", "\r\n")


def test_write_block_handles_non_ascii_comments_and_negative_numbers():
    source = f"{START_MARKER}\nNOTE = 'héllo' # naïve\nSHIFT = -1e-5  # ε\n{END_MARKER}\n"
    new = write_block(source, {"NOTE": "wörld", "SHIFT": -2.5e-7})
    assert new == f"{START_MARKER}\nNOTE = 'wörld' # naïve\nSHIFT = -2.5e-7  # ε\n{END_MARKER}\n"


def test_lines_are_split_on_newline_only():
    assert split_lines("a\rb\x0cc\x85d\u2028e\nf") == ["a\rb\x0cc\x85d\u2028e\n", "f"]
    assert split_lines("a\n\n") == ["a\n", "\n"] and split_lines("") == []


@pytest.mark.parametrize("sep", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_a_line_break_lookalike_does_not_make_two_block_lines(sep):
    # str.splitlines() would see `N_LAYER = 4` and `DROPOUT = 0.5` here; Python sees one line
    with pytest.raises(ValueError, match="line 10"):
        read_block(TRAIN_PY.replace("N_LAYER = 4", f"N_LAYER = 4{sep}DROPOUT = 0.5"))


def test_write_block_keeps_odd_characters_elsewhere_as_they_are():
    source = TRAIN_PY.replace("import torch", "import torch\x0c# form feed\x85")
    new = write_block(source, {"N_LAYER": 8})
    assert new == source.replace("N_LAYER = 4", "N_LAYER = 8")


@pytest.mark.parametrize("value, text", [
    (3e-3, "0.003"), (0.0006, "6e-4"), (1e-05, "1e-5"), (1.5e-5, "1.5e-5"), (0.95, "0.95"),
    (1.0, "1.0"), (0.0, "0.0"), (1e6, "1e6"), (0.1 + 0.2, "0.30000000000000004"), (5e-324, "5e-324"),
])
def test_floats_are_short_and_round_trip_exactly(value, text):
    assert format_literal(value) == text
    new = write_block(TRAIN_PY, {"LEARNING_RATE": value})
    read = read_block(new)["LEARNING_RATE"]
    assert read == value and type(read) is float


def test_format_literal_rejects_what_is_not_a_block_value():
    with pytest.raises(TypeError):
        format_literal([1, 2])
    with pytest.raises(ValueError):
        format_literal(float("nan"))
    with pytest.raises(ValueError):
        write_block(TRAIN_PY, {"LEARNING_RATE": float("inf")})


def test_unknown_names_raise_key_error():
    with pytest.raises(KeyError, match="LEARNING_RATE_NOTE"):
        write_block(TRAIN_PY, {"LEARNING_RATE_NOTE": "inside?"})


@pytest.mark.parametrize("source, reason", [
    (TRAIN_PY.replace(START_MARKER, "# hyperparameters"), "start marker"),
    (TRAIN_PY.replace(END_MARKER, ""), "end marker"),
    (f"{END_MARKER}\nX = 1\n{START_MARKER}\n", "before"),
    (TRAIN_PY.replace("N_LAYER = 4", "N_LAYER = 2 * 2"), "not a literal"),
    (TRAIN_PY.replace("N_LAYER = 4", "N_LAYER = [4]"), "must be a str, bool, int or float"),
    (TRAIN_PY.replace("N_LAYER = 4", "import os"), "expected NAME = literal"),
    (TRAIN_PY.replace("N_LAYER = 4", "N_LAYER = 4; DROPOUT = 0.1"), "expected NAME = literal"),
    (TRAIN_PY.replace("N_LAYER = 4", "N_LAYER = (4,"), "not valid Python"),
    (TRAIN_PY.replace("N_LAYER = 4", "N_LAYER: int = 4"), "expected NAME = literal"),
    (TRAIN_PY.replace("N_LAYER = 4", "DROPOUT = 0.2"), "assigned twice"),
])
def test_read_block_explains_what_is_wrong(source, reason):
    with pytest.raises(ValueError, match=reason):
        read_block(source)
    with pytest.raises(ValueError, match=reason):
        write_block(source, {})
