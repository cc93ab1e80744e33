from swarm_node.assets import load_config
from swarm_node.research.hparams import write_block
from swarm_node.research.policy import check_change

from conftest import TOY_TARGET

SPACE = load_config("search_space")
SOURCE = (TOY_TARGET / "train.py").read_text()


def check(new, mode="hparams"):
    return check_change(SOURCE, new, mode=mode, space=SPACE)


def test_a_literal_change_within_bounds_is_allowed():
    assert check(write_block(SOURCE, {"LEARNING_RATE": 0.003, "INIT": "kaiming"})) is None


def test_comments_and_spacing_do_not_count_as_code():
    assert check(SOURCE.replace("import math", "import math  # for log")) is None


def test_code_outside_the_block_is_refused_unless_code_mode():
    evil = SOURCE.replace("import math", "import math\nimport os; os.system('echo owned')")
    assert "outside the hyperparameter block" in check(evil)
    assert check(evil, mode="code") is None


def test_out_of_bounds_wrong_type_and_unknown_choice_are_refused():
    assert "outside" in check(write_block(SOURCE, {"LEARNING_RATE": 5.0}))
    assert "not one of" in check(write_block(SOURCE, {"INIT": "orthogonal"}))
    assert "must stay a bool" in check(SOURCE.replace("TIE_EMBEDDINGS = False", "TIE_EMBEDDINGS = 1"))
    assert "not in the search space" in check(write_block(SOURCE, {"SLEEP_SECONDS": 5.0}))


def test_names_added_or_expressions_in_the_block_are_refused():
    added = SOURCE.replace("ACTIVATION = \"gelu\"", "ACTIVATION = \"gelu\"\nEXTRA = 1")
    assert check(added) is not None
    expr = SOURCE.replace("LEARNING_RATE = 0.001", "LEARNING_RATE = __import__('os').getpid()")
    assert "hyperparameter block" in check(expr)


def test_syntax_errors_are_refused_in_every_mode():
    assert "does not parse" in check(SOURCE + "\ndef (:\n", mode="code")
