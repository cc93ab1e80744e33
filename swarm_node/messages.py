"""The wire contract's models: every gossip message and sync frame, its fields and their rules.

Pure code. wire.py encodes and decodes them (canonical msgpack, the reasons a message is rejected);
protocol/PROTOCOL.md describes the same contract for other implementations; protocol/schema.json
is generated from these models (`json_schema()`) and a test keeps it up to date.
"""
from __future__ import annotations

import hashlib
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import models_json_schema

PROTOCOL_VERSION = 2  # 2: compute budgets, per-seed runs in results, discoveries and claims
MAX_DIFF_BYTES = 32 * 1024  # Discovery.diff, UTF-8 bytes
MAX_SOURCE_BYTES = 512 * 1024  # train.py carried by a sync answer, UTF-8 bytes
METRIC_MAX = 16.0  # bits per byte: 8 is a uniform byte model, 16 leaves room for bad runs
MAX_SAFE_INT = 2**53 - 1  # integers other implementations (JavaScript) hold exactly

TOPIC_PREFIX = f"swarm-node/{PROTOCOL_VERSION}"
PRESENCE_TOPIC = f"{TOPIC_PREFIX}/presence"

# ---- field types -------------------------------------------------------------------------------

StateHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
PeerId = Annotated[str, StringConstraints(pattern=r"^[1-9A-HJ-NP-Za-km-z]{32,128}$")]
ShortText = Annotated[str, StringConstraints(max_length=64)]
Description = Annotated[str, StringConstraints(max_length=512)]
Metric = Annotated[float, Field(gt=0.0, le=METRIC_MAX, allow_inf_nan=False)]
Timestamp = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
Scalar = Union[
    bool, int, Annotated[float, Field(allow_inf_nan=False)], Annotated[str, StringConstraints(max_length=256)]
]
ScalarMap = Annotated[dict[ShortText, Scalar], Field(max_length=64)]


def state_hash(source: str) -> str:
    """A state's name: sha256 of train.py's UTF-8 bytes, lowercase hex."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def research_topic(target: str, corpus: str) -> str:
    """The one topic carrying Claim/Result/Discovery/Adoption for every tier of target+corpus."""
    return f"{TOPIC_PREFIX}/research/{target}/{corpus[:16]}"


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Versioned(_Model):
    """A gossip message or sync frame: its first field is the protocol version."""

    v: Literal[2] = 2


class BenchKey(_Model):
    """What makes two measurements comparable: same target, corpus, tier and budget, and whatever
    else changes a run's numbers (the device type and the torch version)."""

    target: Name
    corpus: StateHash  # sha256 of the evaluation corpus
    tier: Name
    budget: Annotated[int, Field(ge=1, le=2**63 - 1)]  # training FLOPs (a 64-bit int), or seconds when unit is "seconds"
    unit: Literal["flops", "seconds"]  # seconds: a time budget, only for one machine researching alone
    device: Literal["cpu", "cuda", "mps"]
    torch: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.]{1,32}$")]  # torch's version without its build tag, "2.13.0"

    def topic(self) -> str:
        return research_topic(self.target, self.corpus)


class SeedRun(_Model):
    """One training run's values: runs are reproducible, so (state, seed) names a fact."""

    seed: Count
    val_bpb: Metric
    test_bpb: Metric | None = None


SeedRuns = Annotated[list[SeedRun], Field(max_length=32)]


def _distinct_seeds(runs: list[SeedRun]) -> None:
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError("a seed appears twice in runs")


class Best(_Model):
    """The best state a node knows for one bench key (one entry of the monotone register)."""

    bench: BenchKey
    state: StateHash
    val_bpb: Metric
    test_bpb: Metric | None = None
    author: PeerId  # who discovered it


def _keyed_by_tier(best: dict[str, Best]) -> None:
    """A map tier -> best (presence, sync best answer): each key is its entry's tier."""
    for tier, entry in best.items():
        if entry.bench.tier != tier:
            raise ValueError(f"best[{tier!r}] holds a state of tier {entry.bench.tier!r}")


class _Gossip(_Versioned):
    """The fields every gossip message starts with (PROTOCOL.md section 4, "Common fields")."""

    author: PeerId  # base58 peer id; must equal the libp2p signer
    ts: Timestamp  # unix seconds when the author created the message
    type: str  # each message narrows it to its Literal tag (pydantic keeps the field in this place)


class Presence(_Gossip):
    """Periodic heartbeat of one node, on the swarm-wide presence topic."""

    type: Literal["presence"] = "presence"
    bench: BenchKey  # what the node works on (its tier is bench.tier)
    role: ShortText
    hardware: ScalarMap
    head: StateHash
    head_val_bpb: Metric | None = None
    best: Annotated[dict[Name, Best], Field(max_length=32)] = {}  # tier -> best known
    counters: Annotated[dict[ShortText, Count], Field(max_length=32)] = {}
    version: ShortText
    addrs: Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=16)] = []

    @property
    def tier(self) -> str:
        return self.bench.tier

    @model_validator(mode="after")
    def _best_keyed_by_tier(self) -> "Presence":
        _keyed_by_tier(self.best)
        return self


class _Experiment(_Gossip):
    """What a claim and a result name: the change from `parent` to `state`, measured under `bench`."""

    bench: BenchKey
    state: StateHash
    parent: StateHash
    description: Description


class Claim(_Experiment):
    """The state a node is about to measure, so that others skip it."""

    type: Literal["claim"] = "claim"
    seeds: Annotated[list[Count], Field(max_length=32)] = []  # the seeds it will run


class Result(_Experiment):
    """One finished experiment, kept or not."""

    type: Literal["result"] = "result"
    status: Literal["keep", "discard", "crash"]
    val_bpb: Metric | None = None  # the mean over `runs`
    test_bpb: Metric | None = None
    runs: SeedRuns = []  # every seed that ran to the end, with its values

    @model_validator(mode="after")
    def _measured_unless_crashed(self) -> "Result":
        if self.status != "crash" and self.val_bpb is None:
            raise ValueError(f"a {self.status} result needs val_bpb")
        _distinct_seeds(self.runs)
        return self


class Discovery(_Gossip):
    """A confirmed keep: the diff that turns `parent` into `state`, with its evidence."""

    type: Literal["discovery"] = "discovery"
    bench: BenchKey
    state: StateHash
    parent: StateHash
    # unified diff of train.py (PROTOCOL.md section 5, "The diff"); the limit is in UTF-8 bytes: JSON
    # Schema cannot say: its maxLength (characters) is only the weaker bound
    diff: Annotated[str, StringConstraints(max_length=MAX_DIFF_BYTES)] = Field(
        description=f"unified diff of train.py from parent to state, at most {MAX_DIFF_BYTES} UTF-8 bytes "
        "(maxLength counts characters: a weaker bound; the byte limit is checked by the reference models)")
    val_bpb: Metric  # the mean over `runs`
    test_bpb: Metric | None = None
    runs: Annotated[SeedRuns, Field(min_length=1)]  # per seed, decision and confirmation
    noise: Annotated[float, Field(ge=0.0, le=METRIC_MAX, allow_inf_nan=False)]  # pooled SD of paired differences
    description: Description
    hparams: ScalarMap = {}  # the new hyperparameter values, where the diff only changes those

    @model_validator(mode="after")
    def _a_real_change(self) -> "Discovery":
        if self.state == self.parent:
            raise ValueError("state equals parent")
        _distinct_seeds(self.runs)
        if len(self.diff.encode("utf-8")) > MAX_DIFF_BYTES:
            raise ValueError(f"diff over {MAX_DIFF_BYTES} bytes")
        return self


class Adoption(_Gossip):
    """Node `author` now runs on `state`, built from the discovery `discovery_state`."""

    type: Literal["adoption"] = "adoption"
    bench: BenchKey
    discovery_state: StateHash
    state: StateHash  # the node's new head (equal to discovery_state unless merged)
    val_bpb: Metric | None = None  # the new head's mean, None if adopted without re-running anything
    verified: bool  # True when the seeds this node chose to re-run reproduced the discovery's values
    runs: SeedRuns = []  # what this node re-ran

    @model_validator(mode="after")
    def _distinct(self) -> "Adoption":
        _distinct_seeds(self.runs)
        return self


AnyMessage = Union[Presence, Claim, Result, Discovery, Adoption]  # for type hints
Message = Annotated[AnyMessage, Field(discriminator="type")]  # for validation (tagged by `type`)
MESSAGE_TYPES = (Presence, Claim, Result, Discovery, Adoption)


def topic_for(msg: AnyMessage) -> str:
    """The topic a message travels on: presence is swarm-wide, the rest per target+corpus."""
    return PRESENCE_TOPIC if isinstance(msg, Presence) else msg.bench.topic()


# ---- sync protocol frames ---------------------------------------------------------------------


class BestRequest(_Versioned):
    op: Literal["best"] = "best"


class StateRequest(_Versioned):
    op: Literal["state"] = "state"
    state: StateHash


class BestAnswer(_Versioned):
    op: Literal["best"] = "best"
    best: Annotated[dict[Name, Best], Field(max_length=256)]

    @model_validator(mode="after")
    def _best_keyed_by_tier(self) -> "BestAnswer":
        _keyed_by_tier(self.best)
        return self


class StateAnswer(_Versioned):
    op: Literal["state"] = "state"
    state: StateHash
    source: Annotated[str, StringConstraints(max_length=MAX_SOURCE_BYTES)] | None = Field(  # None: unknown
        description=f"train.py of `state` (its UTF-8 bytes hash to `state`), at most {MAX_SOURCE_BYTES} UTF-8 "
        "bytes (maxLength counts characters: a weaker bound); null when the answerer does not have it")

    @model_validator(mode="after")
    def _source_in_bytes(self) -> "StateAnswer":
        if self.source is not None and len(self.source.encode("utf-8")) > MAX_SOURCE_BYTES:
            raise ValueError(f"source over {MAX_SOURCE_BYTES} bytes")
        return self


class ErrorAnswer(_Versioned):
    op: Literal["error"] = "error"
    error: ShortText


SyncRequest = Annotated[Union[BestRequest, StateRequest], Field(discriminator="op")]
SyncAnswer = Annotated[Union[BestAnswer, StateAnswer, ErrorAnswer], Field(discriminator="op")]


def json_schema() -> dict:
    """JSON schema of every message and sync frame; protocol/schema.json is this, pretty-printed."""
    models = [*MESSAGE_TYPES, BenchKey, Best, BestRequest, StateRequest, BestAnswer, StateAnswer, ErrorAnswer]
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    for name, definition in defs["$defs"].items():  # on the wire v and the discriminator are required
        tag = "type" if "type" in definition["properties"] else "op" if "op" in definition["properties"] else None
        if tag is not None and "v" in definition["properties"]:
            definition["required"] = ["v", tag] + [f for f in definition.get("required", []) if f not in ("v", tag)]
    ref = lambda name: {"$ref": f"#/$defs/{name}"}  # noqa: E731
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"swarm-node wire messages, version {PROTOCOL_VERSION}",
        "description": (
            "A gossip message is one of oneOf (discriminated by 'type'). Sync requests are "
            "BestRequest or StateRequest; sync answers BestAnswer, StateAnswer or ErrorAnswer "
            "(discriminated by 'op'). Encoded as msgpack maps, see PROTOCOL.md section 4: an 'integer' "
            "is a msgpack int (never a float such as 2.0, never a bool), a list or map is never null "
            "(left out, it is empty), map keys are msgpack str, each once per map. maxLength counts "
            "characters (Unicode code points), except that Discovery.diff and StateAnswer.source are "
            "limited in UTF-8 bytes (their descriptions). The cross-field rules this schema cannot "
            "state are in PROTOCOL.md section 11."
        ),
        "oneOf": [ref(m.__name__) for m in MESSAGE_TYPES],
        "discriminator": {"propertyName": "type"},
        "$defs": defs["$defs"],
    }

