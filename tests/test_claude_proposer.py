"""ClaudeProposer through the real anthropic SDK; only the HTTP transport is faked."""
import hashlib
import importlib
import json

import anthropic
import pytest

from swarm_node.research.hparams import END_MARKER, START_MARKER, read_block
from swarm_node.research.proposers.base import (
    PastExperiment,
    Proposal,
    ProposalContext,
    ProposerError,
    TransferCandidate,
)
from swarm_node.research.proposers.claude import ClaudeProposer

TRAIN_PY = f'''"""A tiny GPT for the tests."""
import torch

{START_MARKER}
LEARNING_RATE = 6e-4  # peak learning rate
WARMUP_STEPS = 100
N_LAYER = 4
DROPOUT = 0.0
INIT = "normal"  # normal | kaiming | xavier
TIE_EMBEDDINGS = True
{END_MARKER}


def main():
    print("val_bpb:", 1.0)
'''
# The SDK's own HTTP library: httpx for anthropic < 2, httpx2 (same API, new package) from 2 on; the
# SDK refuses a client from the other one.
httpx = importlib.import_module(next(
    cls.__module__.partition(".")[0] for cls in anthropic.DefaultHttpxClient.__mro__ if cls.__module__.startswith("httpx")
))

PROGRAM = "# tinygpt program\nLower val_bpb within the five-minute budget."


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def context(**overrides) -> ProposalContext:
    values = dict(
        head_source=TRAIN_PY,
        head_hparams=read_block(TRAIN_PY),
        head_val_bpb=1.2345,
        role="lr-sweep",
        search_space={
            "LEARNING_RATE": {"min": 1e-4, "max": 1e-2, "kind": "log"},
            "N_LAYER": {"min": 2, "max": 8, "kind": "int"},
            "INIT": {"choices": ["normal", "kaiming", "xavier"]},
        },
        history=[
            PastExperiment(sha(TRAIN_PY), "baseline", read_block(TRAIN_PY), 1.2345, "baseline"),
            PastExperiment("b" * 64, "lr up to 2e-3", {**read_block(TRAIN_PY), "LEARNING_RATE": 2e-3},
                           1.31, "discard"),
            PastExperiment("c" * 64, "deeper | crashed", {**read_block(TRAIN_PY), "N_LAYER": 12}, None, "crash"),
        ],
        program=PROGRAM,
        transfers=[TransferCandidate("xavier init", {"INIT": "xavier"}, 1.19, "gpu-h100", "peer-7")],
        known_states={sha(TRAIN_PY), "b" * 64, "c" * 64},
    )
    values.update(overrides)
    return ProposalContext(**values)


def tool_reply(name="propose_change", tool_input=None, text=None) -> dict:
    content = [{"type": "text", "text": text}] if text else []
    if name is not None:
        content.append({"type": "tool_use", "id": "toolu_01", "name": name, "input": tool_input})
    return {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": content, "stop_reason": "tool_use" if name else "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 900, "output_tokens": 60},
    }


def change(description="raise the learning rate", **changes) -> dict:
    return tool_reply(tool_input={"description": description, "changes": changes})


class FakeAPI:
    """An httpx transport that answers Messages API requests from a script and keeps them."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json=reply)

    def bodies(self) -> list[dict]:
        return [json.loads(request.content) for request in self.requests]

    def proposer(self, **options) -> ClaudeProposer:
        http = httpx.Client(transport=httpx.MockTransport(self))
        client = anthropic.Anthropic(api_key="sk-test-key", max_retries=0, http_client=http)
        return ClaudeProposer(client=client, **options)


def error_response(status: int, kind: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"type": "error", "error": {"type": kind, "message": message}})


def test_a_good_tool_call_becomes_a_proposal():
    api = FakeAPI(change("lr 1e-3 with a longer warmup", LEARNING_RATE=0.001, WARMUP_STEPS=200.0))
    proposal = api.proposer(model="claude-test").propose(context())

    assert isinstance(proposal, Proposal)
    assert proposal.description == "lr 1e-3 with a longer warmup"
    assert proposal.train_py == TRAIN_PY.replace("LEARNING_RATE = 6e-4", "LEARNING_RATE = 0.001").replace(
        "WARMUP_STEPS = 100", "WARMUP_STEPS = 200")

    [request] = api.requests
    assert request.url.path == "/v1/messages"
    # the key travels as x-api-key (anthropic < 2) or as a bearer token (anthropic 2.x)
    assert "sk-test-key" in (request.headers.get("x-api-key"), request.headers.get("authorization", "").removeprefix("Bearer "))
    body = json.loads(request.content)
    assert body["model"] == "claude-test"
    assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == "propose_change"
    [tool] = body["tools"]
    assert tool["name"] == "propose_change"
    assert tool["input_schema"]["required"] == ["description", "changes"]
    names = tool["input_schema"]["properties"]["changes"]["properties"]
    assert names["LEARNING_RATE"]["type"] == "number" and names["WARMUP_STEPS"]["type"] == "integer"
    assert names["INIT"]["enum"] == ["normal", "kaiming", "xavier"]
    assert PROGRAM in body["system"]
    assert "lr-sweep" in body["system"] and "LEARNING_RATE: float from 1e-4 to 0.01 (log scale)" in body["system"]
    [message] = body["messages"]
    assert message["role"] == "user" and TRAIN_PY.rstrip() in message["content"]
    assert "discard | 1.3100 | local | lr up to 2e-3" in message["content"]
    assert "crash | - | local | deeper / crashed" in message["content"]
    assert "'xavier init' by peer-7 on tier gpu-h100" in message["content"]
    assert "- N_LAYER=12\n- LEARNING_RATE=0.002" in message["content"]  # measured configs, newest first


def test_code_changes_offer_a_second_tool_and_accept_a_full_train_py():
    new_train_py = TRAIN_PY.replace("import torch", "import math\nimport torch")
    api = FakeAPI(tool_reply("replace_train_py", {"description": "import math", "train_py": new_train_py}))
    proposal = api.proposer(allow_code=True).propose(context())
    assert proposal == Proposal(train_py=new_train_py, description="import math")
    body = api.bodies()[0]
    assert [tool["name"] for tool in body["tools"]] == ["propose_change", "replace_train_py"]
    assert body["tool_choice"]["type"] == "any"


def test_descriptions_are_cut_to_one_line():
    api = FakeAPI(change("  kaiming init\n because deeper nets  " + "x" * 300, INIT="kaiming"))
    proposal = api.proposer().propose(context())
    assert proposal.description.startswith("kaiming init because deeper nets x")
    assert len(proposal.description) == 200 and "\n" not in proposal.description


@pytest.mark.parametrize("reply, status", [
    (error_response(500, "api_error", "Internal server error"), "500"),
    (error_response(529, "overloaded_error", "Overloaded"), "529"),
    (error_response(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"), "429"),
    (error_response(401, "authentication_error", "invalid x-api-key"), "401"),
])
def test_api_errors_become_proposer_errors_with_the_status(reply, status):
    api = FakeAPI(reply)
    with pytest.raises(ProposerError, match=status) as caught:
        api.proposer().propose(context())
    assert caught.value.args[0].startswith(f"Anthropic API returned {status}")
    assert len(api.requests) == 1


def test_connection_errors_and_timeouts_become_proposer_errors():
    api = FakeAPI(httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out"))
    with pytest.raises(ProposerError, match="cannot reach the Anthropic API"):
        api.proposer().propose(context())
    with pytest.raises(ProposerError, match="timed out"):
        api.proposer().propose(context())


@pytest.mark.parametrize("reply, reason", [
    (tool_reply(name=None, text="I think you should raise the learning rate."), "no tool call"),
    (tool_reply("run_shell", {"command": "rm -rf /"}), "unknown tool 'run_shell'"),
    (tool_reply("replace_train_py", {"description": "x", "train_py": TRAIN_PY}), "unknown tool"),
    (tool_reply(tool_input={"description": "no changes"}), "'changes' must be an object"),
    (tool_reply(tool_input={"changes": {"N_LAYER": 6}}), "description"),
    (tool_reply(tool_input={"description": "  ", "changes": {"N_LAYER": 6}}), "description"),
    (change(changes_nothing=None), "unknown hyperparameter changes_nothing"),
    (tool_reply(tool_input={"description": "empty", "changes": {}}), "empty"),
    (change(LR=0.001), "unknown hyperparameter LR"),
    (change(LEARNING_RATE="0.001"), "LEARNING_RATE must be a finite float"),
    (change(N_LAYER=6.5), "N_LAYER must be an int"),
    (change(N_LAYER=True), "N_LAYER must be an int"),
    (change(TIE_EMBEDDINGS=1), "TIE_EMBEDDINGS must be a bool"),
    (change(INIT=3), "INIT must be a string"),
    (change(N_LAYER=[6, 8]), "N_LAYER must be a literal"),
    (change(INIT={"name": "xavier"}), "INIT must be a literal"),
    (tool_reply(tool_input=["not", "an", "object"]), "not an object"),
])
def test_malformed_tool_output_is_a_proposer_error(reply, reason):
    api = FakeAPI(reply)
    with pytest.raises(ProposerError, match="malformed tool output") as caught:
        api.proposer().propose(context())
    assert reason in str(caught.value)


def test_a_code_proposal_must_keep_the_hyperparameter_block():
    api = FakeAPI(tool_reply("replace_train_py", {"description": "drop the block", "train_py": "print(1)\n"}))
    with pytest.raises(ProposerError, match="malformed tool output: the new train.py has no readable"):
        api.proposer(allow_code=True).propose(context())


def test_changes_sent_as_a_json_string_are_read():
    api = FakeAPI(tool_reply(tool_input={"description": "xavier", "changes": '{"INIT": "xavier"}'}))
    proposal = api.proposer().propose(context())
    assert read_block(proposal.train_py)["INIT"] == "xavier"


def test_a_known_state_gets_one_retry_that_can_succeed():
    api = FakeAPI(change("lr 2e-3 again", LEARNING_RATE=2e-3), change("xavier init", INIT="xavier"))
    known = sha(TRAIN_PY.replace("LEARNING_RATE = 6e-4", "LEARNING_RATE = 0.002"))
    proposal = api.proposer().propose(context(known_states={sha(TRAIN_PY), known}))
    assert proposal.description == "xavier init"
    assert read_block(proposal.train_py)["INIT"] == "xavier"

    first, retry = api.bodies()
    assert retry["messages"][0] == first["messages"][0]
    assistant, answer = retry["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"][-1]["type"] == "tool_use"
    assert assistant["content"][-1]["input"]["changes"] == {"LEARNING_RATE": 2e-3}
    [result] = answer["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01"
    assert "already measured" in result["content"]


def test_a_known_state_twice_is_a_proposer_error():
    first = TRAIN_PY.replace("LEARNING_RATE = 6e-4", "LEARNING_RATE = 0.002")
    second = TRAIN_PY.replace("N_LAYER = 4", "N_LAYER = 6")
    api = FakeAPI(change(LEARNING_RATE=2e-3), change(N_LAYER=6))
    with pytest.raises(ProposerError, match="already measured state twice"):
        api.proposer().propose(context(known_states={sha(first), sha(second)}))
    assert len(api.requests) == 2


def test_a_change_to_the_current_values_counts_as_a_repeat():
    api = FakeAPI(change(LEARNING_RATE=0.0006), change(N_LAYER=4.0))
    with pytest.raises(ProposerError, match="already measured state twice"):
        api.proposer().propose(context())
    assert "exactly as it is" in api.bodies()[1]["messages"][2]["content"][0]["content"]


def test_missing_api_key_fails_at_construction(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProposerError, match="ANTHROPIC_API_KEY is not set"):
        ClaudeProposer()


def test_a_built_client_reads_the_key_and_the_model_override(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env-key")
    monkeypatch.setenv("SWARM_CLAUDE_MODEL", "claude-opus-test")
    proposer = ClaudeProposer()
    assert proposer.client.api_key == "sk-env-key" and proposer.client.max_retries <= 2
    assert proposer.model == "claude-opus-test"
    assert ClaudeProposer(model="claude-explicit").model == "claude-explicit"
    monkeypatch.delenv("SWARM_CLAUDE_MODEL")
    assert ClaudeProposer().model == "claude-sonnet-4-6"
