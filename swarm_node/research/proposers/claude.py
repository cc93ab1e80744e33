"""Claude as a proposer: one Messages API call per proposal, answered through a forced tool call.

The model sees program.md, the node's role and search space, the current train.py, recent history,
candidates from peers and the configurations already measured. It answers with `propose_change`
(new literal values for the hyperparameter block) or, when code changes are allowed,
`replace_train_py` (the full new text). Anything that goes wrong becomes a ProposerError, so the
loop can fall back to another proposer for the round.
"""
from __future__ import annotations

import json
import math
import os

import anthropic

from swarm_node.research import hparams
from swarm_node.messages import state_hash
from swarm_node.research.proposers.base import (
    PastExperiment,
    Proposal,
    ProposalContext,
    ProposerError,
    TransferCandidate,
)

DEFAULT_MODEL = "claude-sonnet-4-6"  # the SDK flags claude-sonnet-4-5 as deprecated
MODEL_ENV = "SWARM_CLAUDE_MODEL"
HISTORY_ROWS = 20
AVOID_ROWS = 60
DESCRIPTION_CHARS = 200

DEFAULT_PROGRAM = (
    "You are an ML researcher tuning train.py, a small GPT trained for a fixed time budget. "
    "The goal is the lowest validation bits per byte (val_bpb)."
)


class ClaudeProposer:
    name = "claude"

    def __init__(
        self,
        *,
        client: anthropic.Anthropic | None = None,
        model: str | None = None,
        allow_code: bool = False,
        max_tokens: int | None = None,
        tier: str = "",
    ):
        if client is None:
            if not os.environ.get("ANTHROPIC_API_KEY"):
                raise ProposerError("ANTHROPIC_API_KEY is not set: export it, or use --proposer heuristic")
            client = anthropic.Anthropic(max_retries=2, timeout=300.0)
        self.client = client
        self.model = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
        self.allow_code = allow_code
        self.max_tokens = max_tokens or (16_000 if allow_code else 2_048)
        self.tier = tier

    def propose(self, ctx: ProposalContext) -> Proposal | None:
        try:
            head_block = hparams.read_block(ctx.head_source)
        except ValueError as exc:
            raise ProposerError(f"cannot read train.py's hyperparameter block: {exc}") from exc
        head_state = state_hash(ctx.head_source)
        tools = self._tools(head_block, ctx.search_space)
        system = system_prompt(ctx, tier=ctx.tier or self.tier, allow_code=self.allow_code)
        messages: list[dict] = [{"role": "user", "content": user_message(ctx, head_block)}]
        for attempt in range(2):
            reply = self._ask(system, messages, tools)
            call = _tool_call(reply, {tool["name"] for tool in tools})
            proposal = self._proposal(call, ctx.head_source, head_block)
            state = state_hash(proposal.train_py)
            if state == head_state:
                repeat = "That leaves train.py exactly as it is: the values equal the current ones."
            elif state in ctx.known_states:
                repeat = f"That configuration was already measured (state {state[:12]})."
            else:
                return proposal
            messages += [
                {"role": "assistant", "content": _replayed(reply, call)},
                {"role": "user", "content": [{
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "is_error": True,
                    "content": f"{repeat} Propose a different experiment.",
                }]},
            ]
        raise ProposerError(f"Claude proposed an already measured state twice (last: {proposal.description!r})")

    def _tools(self, head_block: dict, search_space: dict) -> list[dict]:
        tools = [propose_change_tool(head_block, search_space)]
        if self.allow_code:
            tools.append(REPLACE_TRAIN_PY_TOOL)
        return tools

    def _ask(self, system: str, messages: list[dict], tools: list[dict]):
        if len(tools) == 1:
            choice = {"type": "tool", "name": tools[0]["name"], "disable_parallel_tool_use": True}
        else:
            choice = {"type": "any", "disable_parallel_tool_use": True}
        try:
            return self.client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                messages=messages,
                tools=tools,
                tool_choice=choice,
            )
        except anthropic.APIStatusError as exc:
            raise ProposerError(_status_reason(exc)) from exc
        except anthropic.APITimeoutError as exc:
            raise ProposerError("the Anthropic API timed out") from exc
        except anthropic.APIConnectionError as exc:
            raise ProposerError(f"cannot reach the Anthropic API: {exc.__cause__ or exc}") from exc
        except (anthropic.AnthropicError, ValueError) as exc:
            raise ProposerError(f"Anthropic request failed: {exc}") from exc

    def _proposal(self, call, head_source: str, head_block: dict) -> Proposal:
        args = call.input
        if not isinstance(args, dict):
            raise _malformed(f"{call.name} input is {type(args).__name__}, not an object")
        description = args.get("description")
        if not isinstance(description, str) or not description.strip():
            raise _malformed(f"{call.name} needs a non-empty string 'description'")
        description = " ".join(description.split())[:DESCRIPTION_CHARS]
        if call.name == "replace_train_py":
            return Proposal(train_py=_checked_train_py(args.get("train_py")), description=description)
        changes = _checked_changes(args.get("changes"), head_block)
        try:
            return Proposal(train_py=hparams.write_block(head_source, changes), description=description)
        except (KeyError, TypeError, ValueError) as exc:
            raise _malformed(f"cannot write the changes: {exc}") from exc


# --- tools -----------------------------------------------------------------------------------

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


# Both tools ask for the same one-line description.
DESCRIPTION_PROPERTY = {"type": "string", "description": "One line (under 200 characters): what changes and why."}


def propose_change_tool(head_block: dict, search_space: dict) -> dict:
    properties = {}
    for name, value in head_block.items():
        prop = {"type": _JSON_TYPES[type(value)], "description": f"now {hparams.format_literal(value)}"}
        choices = (search_space.get(name) or {}).get("choices")
        if choices and all(type(choice) is type(value) for choice in choices):
            prop["enum"] = list(choices)
        properties[name] = prop
    return {
        "name": "propose_change",
        "description": (
            "Propose the next experiment as new values for hyperparameters in train.py's block. The node "
            "writes them, trains for its fixed budget and keeps the change only if val_bpb improves "
            "by more than the measured noise."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "description": DESCRIPTION_PROPERTY,
                "changes": {
                    "type": "object",
                    "description": "Hyperparameter NAME -> new value, only for the names you change.",
                    "properties": properties,
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            },
            "required": ["description", "changes"],
        },
    }


REPLACE_TRAIN_PY_TOOL = {
    "name": "replace_train_py",
    "description": (
        "Propose the next experiment as a code change: the full new text of train.py. Keep the "
        "hyperparameter block with its marker lines, and keep the summary lines the script prints."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "description": DESCRIPTION_PROPERTY,
            "train_py": {"type": "string", "description": "The complete new train.py."},
        },
        "required": ["description", "train_py"],
    },
}


# --- prompts ---------------------------------------------------------------------------------

def system_prompt(ctx: ProposalContext, *, tier: str | None, allow_code: bool) -> str:
    parts = [
        ctx.program.strip() or DEFAULT_PROGRAM,
        "## Your place in the swarm",
        "You are the proposer of one swarm-node, a peer in a swarm of research nodes that each run a "
        "keep/discard loop on train.py and share the changes that win. Each turn you propose exactly "
        "one experiment; the node trains it for a fixed time budget and keeps it only if validation "
        "bits per byte (val_bpb, lower is better) improves by more than the measured noise.",
    ]
    if tier:
        parts.append(f"Hardware tier: {tier}. Results only compare within this tier.")
    if ctx.role:
        parts.append(f"Role: {ctx.role}. Lean your proposals towards this role; other nodes cover the rest.")
    parts += ["## Search space", search_space_text(ctx.search_space), "## How to answer"]
    answer = (
        "Call propose_change with the hyperparameters you change, usually one or two at a time, so the "
        "result says which change helped."
    )
    if allow_code:
        answer += (
            " Or, when the idea needs code, call replace_train_py with the full new train.py; keep the "
            "hyperparameter block with its markers."
        )
    parts.append(answer + " Never repeat a configuration listed as already measured.")
    return "\n\n".join(parts)


def search_space_text(search_space: dict) -> str:
    if not search_space:
        return "No bounds given: keep values plausible for a small GPT on this hardware."
    lines = ["Values outside these bounds are rejected before they run."]
    for name, spec in search_space.items():
        if "choices" in spec:
            lines.append(f"- {name}: one of {', '.join(_show(choice) for choice in spec['choices'])}")
        else:
            kind = spec.get("kind", "float")
            scale = " (log scale)" if kind == "log" else ""
            number = "int" if kind == "int" else "float"
            lines.append(f"- {name}: {number} from {_show(spec.get('min'))} to {_show(spec.get('max'))}{scale}")
    return "\n".join(lines)


def user_message(ctx: ProposalContext, head_block: dict) -> str:
    score = f", val_bpb {ctx.head_val_bpb:.4f}" if ctx.head_val_bpb is not None else ", not measured yet"
    parts = [
        f"## Current train.py (head{score})",
        f"```python\n{ctx.head_source.rstrip()}\n```",
        f"## Recent experiments (oldest first, last {min(HISTORY_ROWS, len(ctx.history))} of {len(ctx.history)})",
        history_table(ctx.history[-HISTORY_ROWS:]),
    ]
    if ctx.transfers:
        parts += ["## Candidates from other tiers and peers", transfers_text(ctx.transfers)]
    parts += [
        "## Already measured configurations (do not propose these again)",
        "Each line lists the values that differ from the current train.py.",
        avoid_text(ctx.history, head_block),
        "Propose the next experiment.",
    ]
    return "\n\n".join(parts)


def history_table(rows: list[PastExperiment]) -> str:
    if not rows:
        return "None yet: this is the first proposal."
    lines = ["status | val_bpb | author | description"]
    for row in rows:
        bpb = f"{row.val_bpb:.4f}" if row.val_bpb is not None else "-"
        lines.append(f"{row.status} | {bpb} | {row.author} | {' '.join(row.description.split()).replace('|', '/')}")
    return "\n".join(lines)


def transfers_text(transfers: list[TransferCandidate]) -> str:
    return "\n".join(
        f"- {t.description!r} by {t.author} on tier {t.tier}: val_bpb {t.val_bpb:.4f}; "
        f"changes {_assignments(t.hparams_changed)}"
        for t in transfers
    )


def avoid_text(history: list[PastExperiment], head_block: dict) -> str:
    seen: list[str] = []
    for row in reversed(history):  # newest first, so the cap keeps the recent ones
        diff = {
            name: value for name, value in row.hparams.items()
            if name not in head_block or type(head_block[name]) is not type(value) or head_block[name] != value
        }
        line = _assignments(diff)
        if diff and line not in seen:
            seen.append(line)
        if len(seen) == AVOID_ROWS:
            break
    return "\n".join(f"- {line}" for line in seen) or "None besides the current train.py."


def _assignments(values: dict) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in values.items())


def _show(value) -> str:
    try:
        return hparams.format_literal(value)
    except (TypeError, ValueError):
        return repr(value)


# --- reading the reply -----------------------------------------------------------------------

def _malformed(reason: str) -> ProposerError:
    return ProposerError(f"malformed tool output: {reason}")


def _tool_call(reply, tool_names: set[str]):
    calls = [block for block in reply.content if getattr(block, "type", None) == "tool_use"]
    if not calls:
        text = " ".join(getattr(block, "text", "") for block in reply.content).strip()
        raise _malformed(f"no tool call in the reply (stop_reason {reply.stop_reason}): {text[:200]!r}")
    call = calls[0]
    if call.name not in tool_names:
        raise _malformed(f"unknown tool {call.name!r}")
    return call


def _checked_changes(changes, head_block: dict) -> dict:
    if isinstance(changes, str):  # some replies carry the object as a JSON string
        try:
            changes = json.loads(changes)
        except ValueError:
            pass
    if not isinstance(changes, dict):
        raise _malformed(f"'changes' must be an object of NAME -> value, got {_short(changes)}")
    if not changes:
        raise _malformed("'changes' is empty")
    unknown = [name for name in changes if name not in head_block]
    if unknown:
        raise _malformed(f"unknown hyperparameter {', '.join(map(str, unknown))}")
    return {name: _coerced(name, value, head_block[name]) for name, value in changes.items()}


def _coerced(name: str, value, current):
    if not isinstance(value, hparams.LITERAL_TYPES):
        raise _malformed(f"{name} must be a literal, got {_short(value)}")
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        kind = {bool: "a bool", int: "an int", float: "a finite float", str: "a string"}[type(current)]
        raise _malformed(f"{name} must be {kind} (now {current!r}), got {_short(value)}")
    return value


def _checked_train_py(train_py) -> str:
    if not isinstance(train_py, str) or not train_py.strip():
        raise _malformed("replace_train_py needs the full text in 'train_py'")
    try:
        hparams.read_block(train_py)
    except ValueError as exc:
        raise _malformed(f"the new train.py has no readable hyperparameter block: {exc}") from exc
    return train_py


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _replayed(reply, call) -> list[dict]:
    """The assistant turn to send back with a retry: its text and the one tool call answered."""
    content = [
        {"type": "text", "text": block.text}
        for block in reply.content
        if getattr(block, "type", None) == "text" and block.text.strip()
    ]
    return content + [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]


def _status_reason(exc: anthropic.APIStatusError) -> str:
    detail = exc.message
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
    hint = {401: " (check ANTHROPIC_API_KEY)", 429: " (rate limited: try again later)"}.get(exc.status_code, "")
    return f"Anthropic API returned {exc.status_code}{hint}: {str(detail)[:300]}"
