"""The dashboard command, its self-contained HTML export, and the page's model run under node."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from swarm_node.dashboard.app import STATIC, page_scripts
from swarm_node.dashboard.command import add_dashboard_parser, export_html, source_for

from dashboard_checks import join, line

REPO = Path(__file__).resolve().parent.parent
# the model's files (the page's state, no drawing), in the order the page loads them
MODEL_FILES = [str(STATIC / name) for name in page_scripts() if name.startswith("model-")]
LOAD_MODEL = "global.window = {}; for (const file of process.argv.slice(1)) require(file);\n"  # node -e, MODEL_FILES


# --- command and export ----------------------------------------------------------------------

def parse(*argv):
    top = argparse.ArgumentParser()
    add_dashboard_parser(top.add_subparsers(dest="command"))
    return top.parse_args(["dashboard", *argv])


def test_dashboard_arguments(tmp_path, monkeypatch):
    args = parse("--replay", str(tmp_path))
    assert (args.host, args.port, args.open) == ("127.0.0.1", 8765, False)
    source = source_for(args)
    assert source.mode == "replay" and source.path == tmp_path / "events.jsonl"
    assert source_for(parse("--replay", str(tmp_path / "events.jsonl"))).path == tmp_path / "events.jsonl"
    monkeypatch.setenv("SWARM_NODE_HOME", str(tmp_path / "home"))
    source = source_for(parse("--port", "0"))
    assert source.mode == "home" and source.path == (tmp_path / "home" / "events.jsonl").resolve()
    assert not (tmp_path / "home").exists()  # a viewer never creates a home
    with pytest.raises(SystemExit):
        parse("--home", "a", "--replay", "b")
    args = parse("--host", "0.0.0.0", "--allow-host", "proxy.example", "--allow-host", "b.example")
    assert args.allow_host == ["proxy.example", "b.example"] and parse().allow_host == []


def test_dashboard_command_refuses_a_bad_allowed_host(tmp_path, capsys):
    (tmp_path / "events.jsonl").write_text(line(join("a")))
    args = parse("--replay", str(tmp_path), "--allow-host", "a b")
    assert args.func(args) == 2
    assert "not a host name" in capsys.readouterr().err


def test_dashboard_command_serves_until_interrupted(tmp_path):
    (tmp_path / "events.jsonl").write_text(line(join("a")))
    code = ("import argparse, sys; from swarm_node.dashboard.command import add_dashboard_parser;"
            "top = argparse.ArgumentParser(); add_dashboard_parser(top.add_subparsers());"
            "args = top.parse_args(sys.argv[1:]); sys.exit(args.func(args))")
    proc = subprocess.Popen([sys.executable, "-c", code, "dashboard", "--replay", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = proc.stdout.readline()
        assert first.startswith("dashboard: http://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[1]
        assert httpx.get(url + "api/meta", timeout=5).json()["mode"] == "replay"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dashboard_command_without_the_replay_file(tmp_path):
    args = parse("--replay", str(tmp_path / "missing"))
    assert args.func(args) == 2


class ScriptReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found, self._open = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = (dict(attrs), [])

    def handle_data(self, data):
        if self._open:
            self._open[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._open:
            self.found.append((self._open[0], "".join(self._open[1])))
            self._open = None


def test_export_is_one_self_contained_file(tmp_path):
    events = [join("a"), {"type": "discovery", "t": 1.0, "wall": 2.0, "id": "ab" * 32, "peer": "a", "tier": "cpu",
                          "state": "ab" * 32, "parent": "cd" * 32, "val_bpb": 2.0, "test_bpb": 2.01,
                          "description": "x", "diff": "+</script><script>alert(1)</script>\n+\u2028"}]
    out = export_html(events, tmp_path / "report.html", "night run")
    html = out.read_text()
    assert 'src="static/' not in html and 'href="static/' not in html
    scripts = ScriptReader()
    scripts.feed(html)
    # the events, then each script of the page in its order: the diff did not end one early
    assert len(scripts.found) == 1 + len(page_scripts())
    assert [text.strip("\n") for _, text in scripts.found[1:]] == [
        (STATIC / name).read_text(encoding="utf-8").replace("</script", "<\\/script").strip("\n") for name in page_scripts()]
    attrs, text = scripts.found[0]
    assert attrs == {"id": "swarm-data", "type": "application/json"}
    data = json.loads(text)
    assert data["title"] == "night run" and data["events"] == events
    assert "cytoscape" in html and "uPlot" in html and "--received" in html
    assert os.path.getsize(out) < 1_000_000


def test_page_model_measures_spread_and_lineage():
    """The model (model-*.js: the page's state) under node: reach, time to 50 % / 100 %, the lineage of a best."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    h = lambda c: c * 64  # noqa: E731 - state hashes
    events = [join(p, 0) for p in ("a", "b", "c", "d")] + [
        {"type": "link", "t": 0, "wall": 1, "a": "a", "b": "b"},
        {"type": "experiment", "t": 1, "wall": 2, "peer": "a", "id": "a-0", "state": h("0"), "description": "baseline",
         "status": "baseline", "val_bpb": 2.0, "test_bpb": 2.01, "tier": "cpu"},
        {"type": "discovery", "t": 10, "wall": 11, "id": h("1"), "peer": "a", "tier": "cpu", "state": h("1"),
         "parent": h("0"), "val_bpb": 1.9, "test_bpb": 1.92, "description": "x", "diff": "+x"},
        {"type": "receipt", "t": 11, "wall": 12, "id": h("1"), "peer": "b", "from": "a"},
        {"type": "receipt", "t": 13, "wall": 14, "id": h("1"), "peer": "c", "from": "b"},
        {"type": "adoption", "t": 20, "wall": 21, "id": h("1"), "peer": "d", "state": h("1"), "val_bpb": 1.9,
         "verified": True},
        {"type": "discovery", "t": 30, "wall": 31, "id": h("2"), "peer": "d", "tier": "cpu", "state": h("2"),
         "parent": h("1"), "val_bpb": 1.8, "test_bpb": 1.83, "description": "y", "diff": "+y"},
        {"type": "reject", "t": 31, "wall": 32, "peer": "a", "from": "d", "reason": "code"},
        {"type": "leave", "t": 40, "wall": 41, "peer": "c"},
    ]
    script = LOAD_MODEL + """
    const m = new window.SwarmModel.Swarm();
    for (const e of JSON.parse(require('fs').readFileSync(0, 'utf8'))) m.apply(e);
    const d = m.discoveries.get('1'.repeat(64));
    console.log(JSON.stringify({counters: m.counters, t50: d.t50, t100: d.t100, adopted: d.adopted.size,
      share: m.share(d), best: m.best.get('cpu'), lineage: m.lineage('cpu').chain.map(s => s.state[0]),
      trajectory: m.trajectory.get('cpu'), via: [...d.via]}));
    """
    out = subprocess.run([node, "-e", script, *MODEL_FILES],
                         input=json.dumps(events), capture_output=True, text=True, timeout=30, check=True)
    seen = json.loads(out.stdout)
    assert seen["t50"] == 1 and seen["t100"] == 10  # 2 of 4 peers after 1 s, all 4 (d adopted) after 10 s
    assert seen["adopted"] == 1 and seen["via"] == [["b", "a"], ["c", "b"]]
    assert seen["share"] == {"reached": 3, "alive": 3, "share": 1}  # c left
    assert seen["counters"]["peers"] == 3 and seen["counters"]["links"] == 1
    assert seen["counters"]["discoveries"] == 2 and seen["counters"]["rejected"] == 1
    assert seen["best"]["val"] == 1.8 and seen["best"]["peer"] == "d" and seen["best"]["test"] == 1.83
    assert seen["lineage"] == ["0", "1", "2"]
    assert seen["trajectory"] == [[1, 2.0], [10, 1.9], [30, 1.8]]


def _run_model(script: str, data) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    out = subprocess.run([node, "-e", LOAD_MODEL + script, *MODEL_FILES],
                         input=json.dumps(data), capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_page_model_measures_real_gossip_delivery_from_wall():
    """A replay's virtual clock puts every receipt at a window's end (t=300): one step. The model
    measures the real delivery from `wall`: ms from the first discovery event to each peer's first
    receipt by gossip (not one inferred from its register), and when 50 % / 100 % of the peers had it."""
    w0 = 1_796_308_683.213
    d = {"type": "discovery", "t": 10, "wall": w0, "id": "x", "peer": "a", "tier": "cpu", "state": "x"}
    receipts = [{"type": "receipt", "t": 300, "wall": w0 + 0.005, "id": "x", "peer": "e", "via": "presence"}] + [
        {"type": "receipt", "t": 300, "wall": round(w0 + ms / 1000, 3), "id": "x", "peer": p, "from": "a"}
        for p, ms in (("c", 20), ("b", 12), ("d", 35), ("e", 48), ("b", 70))]  # b's second receipt: no delivery
    again = dict(d, t=250, wall=w0 + 0.9, peer="b")  # a later author of the same state: still from the first
    runs = {"wall": [join(p) for p in "abcde"] + [d] + receipts + [again],
            "no wall": [{k: v for k, v in e.items() if k != "wall"} for e in [join(p) for p in "abcde"] + [d] + receipts],
            "e by presence": [join(p) for p in "abcde"] + [d] + [r for r in receipts if r["peer"] != "e" or "via" in r],
            "presence only": [join(p) for p in "abcde"] + [d, receipts[0]]}
    seen = _run_model("""
    const out = {};
    for (const [name, events] of Object.entries(JSON.parse(require('fs').readFileSync(0, 'utf8')))) {
      const m = new window.SwarmModel.Swarm();
      for (const e of events) m.apply(e);
      const d = m.discoveries.get('x');
      const r = m.delivery(d);
      out[name] = {t50: d.t50, t100: d.t100, collapsed: m.collapsed(d),
        real: r && {ms: r.ms.map((x) => Math.round(x * 1000) / 1000), t50: r.t50 && Math.round(r.t50), t100: r.t100 && Math.round(r.t100)}};
    }
    console.log(JSON.stringify(out));
    """, runs)
    assert seen["wall"] == {"t50": 290, "t100": 290, "collapsed": True,
                            "real": {"ms": [12, 20, 35, 48], "t50": 20, "t100": 48}}
    assert seen["no wall"]["real"] is None and seen["no wall"]["t100"] == 290  # older files: virtual only
    # e had it only by its register: 100 % of the peers, not by gossip
    assert seen["e by presence"]["real"] == {"ms": [12, 20, 35], "t50": 20, "t100": None}
    assert seen["presence only"]["real"] is None and not seen["presence only"]["collapsed"]


def test_page_model_credits_only_measured_changes():
    """The model folds `effect` events into its discoveries' credit, as swarm_node/credit.py words it:
    a technique is named with its effect only when measured; the rest is "combined, not ablated"."""
    h = lambda c: c * 64  # noqa: E731 - state hashes
    block = "--- a/train.py\n+++ b/train.py\n@@ -12,4 +12,4 @@\n # hyperparameters\n"

    def discovery(t, state, diff, tier="cpu", **extra):
        return {"type": "discovery", "t": t, "wall": 1 + t, "id": f"{tier}:{state}", "peer": "a", "tier": tier,
                "state": state, "parent": h("0"), "val_bpb": 1.9, "test_bpb": 1.92, "description": "x",
                "diff": block + diff, **extra}

    def effect(t, state, name, value, effect, se, kind, tier="cpu"):
        return {"type": "effect", "t": t, "wall": 1 + t, "peer": "a", "tier": tier, "state": state, "name": name,
                "value": value, "effect": effect, "se": se, "seeds": [0, 1], "kind": kind}

    events = [join("a"),
              discovery(1, h("1"), "-NORM = 'layernorm'\n+NORM = 'rmsnorm'  # x\n"),
              effect(2, h("1"), "NORM", "rmsnorm", 0.0123, 0.004, "single"),
              discovery(3, h("2"), "-LEARNING_RATE = 3e-4\n-INIT = 'normal'\n+LEARNING_RATE = 6e-4\n+INIT = 'kaiming'\n"),
              effect(4, h("2"), "LEARNING_RATE", 0.0006, 0.0081, 0.0016, "ablation"),
              effect(4, h("2"), "INIT", "kaiming", 0.02, 0.01, "ablation", tier="gpu-large"),  # another tier's
              discovery(5, h("3"), "-DROPOUT = 0.1\n+DROPOUT = 0.0\n"),
              effect(6, h("4"), "TIE_EMBEDDINGS", True, 0.001, 0.003, "single"),  # before its discovery
              discovery(7, h("4"), "-TIE_EMBEDDINGS = False\n+TIE_EMBEDDINGS = True\n"),
              discovery(8, h("5"), "+WARMUP_STEPS = 0\n", hparams={"ACTIVATION": "silu", "WARMUP_STEPS": 0}),
              discovery(9, h("6"), " # only code changed\n+x = 1\n")]
    seen = _run_model("""
    const m = new window.SwarmModel.Swarm();
    for (const e of JSON.parse(require('fs').readFileSync(0, 'utf8'))) m.apply(e);
    console.log(JSON.stringify(m.discoveryOrder.map((id) => m.credit(m.discoveries.get(id)).map((c) => [c.status, c.text]))));
    """, events)
    assert seen == [
        [["found", "RMSNorm +0.0123 bpb (single, SE 0.0040)"]],
        [["found", "learning rate 0.0006 +0.0081 bpb (ablation, SE 0.0016)"],
         ["combined", "Kaiming init: combined, not ablated"]],
        [["not measured", "no dropout: not measured"]],
        [["no effect", "tied embeddings: no measurable effect (+0.0010 bpb, single, SE 0.0030)"]],
        [["combined", "SiLU activation, no warmup: combined, not ablated"]],
        [],
    ]


def test_page_model_names_techniques_as_credit_py_does():
    """model-credit.js mirrors credit.py's table (its source of truth): the same diff lines give the same names."""
    from swarm_node.credit import NAMES, TECHNIQUES, changes_from_diff, technique
    from swarm_node.research.hparams import format_literal

    values = [v for (_, v) in TECHNIQUES] + [0.006, 6e-4, 1e-5, 3, 1.0, 1234567.0, 0.95, "x", True]
    lines = [f"+{name} = {format_literal(value)}  # c" for name in sorted({n for n, _ in TECHNIQUES} | set(NAMES))
             for value in values] + ["+BETA2 = 0.95", "+X = 'a#b'", "+X == 1", "+X = None", "+++ b/train.py"]
    expected = [[[name, technique(name, value)] for name, value in changes_from_diff(line).items()] for line in lines]
    seen = _run_model("""
    const M = window.SwarmModel;
    console.log(JSON.stringify(JSON.parse(require('fs').readFileSync(0, 'utf8')).map((line) =>
      M.changesFromDiff(line).map((c) => [c.name, M.technique(c.name, c.value, c.float)]))));
    """, lines)
    assert seen == expected
