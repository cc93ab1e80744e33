/* The swarm as its events describe it: plain state, no drawing.
 *
 * `apply(event)` folds one event (see swarm_node/events.py) into the state and notes in
 * `changes` what the views must redraw; the views read the state and clear `changes`.
 */
"use strict";

(function (global) {
  const KNOWN_TIERS = ["gpu-large", "gpu-consumer", "cpu"];
  const TIER_COLORS = { "gpu-large": "#b57bff", "gpu-consumer": "#4d8dff", "cpu": "#2cc5d3" };
  const EXTRA_TIER_COLORS = ["#e879f9", "#94a3b8", "#a3e635", "#f472b6"];
  const DISCOVERY_COLORS = ["#ffd23f", "#ff6b6b", "#3ddc97", "#ff9f1c", "#c77dff", "#4cc9f0",
    "#f15bb5", "#a7c957", "#ff8fab", "#00bbf9"];
  const FEED_KEEP = 120;

  // --- credit: which technique a kept change is, and whether its effect was measured -----------
  //
  // A mirror of swarm_node/credit.py, the source of truth (its TECHNIQUES and NAMES tables, its
  // changes_from_diff and its wording): change both together. A technique counts as found only
  // when an `effect` event measured it: kind "single" (the keep changed only that name: its paired
  // decision is the measurement) or "ablation" (the name reverted in the kept state, paired over
  // the decision seeds). A discovery that changed several names credits the unmeasured ones as
  // "combined, not ablated"; a diff that mentions a technique credits nothing.

  // [hyperparameter, value, technique]: credit.py TECHNIQUES
  const TECHNIQUES = [
    ["INIT", "kaiming", "Kaiming init"], ["INIT", "xavier", "Xavier init"], ["INIT", "normal", "GPT-2 normal init"],
    ["NORM", "rmsnorm", "RMSNorm"], ["NORM", "layernorm", "LayerNorm"],
    ["TIE_EMBEDDINGS", true, "tied embeddings"], ["TIE_EMBEDDINGS", false, "untied embeddings"],
    ["ACTIVATION", "silu", "SiLU activation"], ["ACTIVATION", "gelu", "GELU activation"],
    ["ACTIVATION", "relu", "ReLU activation"],
    ["LR_SCHEDULE", "cosine", "cosine LR decay"], ["LR_SCHEDULE", "linear", "linear LR decay"],
    ["LR_SCHEDULE", "constant", "constant LR"],
    ["WARMUP_STEPS", 0, "no warmup"], ["GRAD_CLIP", 0, "no gradient clipping"], ["DROPOUT", 0, "no dropout"],
  ];
  // hyperparameters whose value is the technique ("learning rate 0.006"): credit.py NAMES
  const TECHNIQUE_NAMES = {
    LEARNING_RATE: "learning rate", WARMUP_STEPS: "warmup steps", WEIGHT_DECAY: "weight decay",
    GRAD_CLIP: "gradient clipping at", BATCH_SIZE: "batch size", SEQ_LEN: "sequence length",
    N_LAYER: "layers", N_EMBD: "width", N_HEAD: "heads", DROPOUT: "dropout",
  };

  // Python compares (name, value) keys by ==: True == 1 == 1.0, False == 0 == 0.0; a str equals only a str.
  function valueKey(value) {
    if (typeof value === "boolean") return "n:" + (value ? 1 : 0);
    if (typeof value === "number") return "n:" + value;
    return "s:" + String(value);
  }
  const TECHNIQUE_LABELS = new Map(TECHNIQUES.map(([name, value, label]) => [name + "=" + valueKey(value), label]));

  /** Python's f"{x:g}": 6 significant digits, exponent form below 1e-4 or from 1e6 on. */
  function formatG(x) {
    if (!isFinite(x)) return String(x);
    if (x === 0) return Object.is(x, -0) ? "-0" : "0";
    const [mantissa, exp] = x.toExponential(5).split("e");
    const power = Number(exp);
    if (power < -4 || power >= 6) {
      const m = mantissa.includes(".") ? mantissa.replace(/0+$/, "").replace(/\.$/, "") : mantissa;
      return `${m}e${power < 0 ? "-" : "+"}${String(Math.abs(power)).padStart(2, "0")}`;
    }
    const fixed = x.toFixed(Math.max(0, 5 - power));
    return fixed.includes(".") ? fixed.replace(/0+$/, "").replace(/\.$/, "") : fixed;
  }

  /** credit.py technique(): ("NORM", "rmsnorm") -> "RMSNorm"; ("LEARNING_RATE", 0.006) -> "learning rate 0.006".
   *  `isFloat`: the value was a float literal (JSON cannot tell 1.0 from 1). */
  function technique(name, value, isFloat) {
    const known = TECHNIQUE_LABELS.get(name + "=" + valueKey(value));
    if (known) return known;
    let shown;
    if (typeof value === "boolean") shown = value ? "True" : "False";
    else if (typeof value === "number") shown = isFloat || !Number.isInteger(value) ? formatG(value) : String(value);
    else shown = String(value);
    return TECHNIQUE_NAMES[name] ? `${TECHNIQUE_NAMES[name]} ${shown}` : `${name} = ${shown}`;
  }

  /** The value of a block line's literal (`'rmsnorm'  # comment`, `6e-4`, `True`): {value, float},
   *  or null when it is no str, bool, int or float literal (credit.py skips such lines too). */
  function parseLiteral(text) {
    text = text.trim();
    const quoted = /^(['"])((?:\\.|(?!\1)[^\\])*)\1\s*(#.*)?$/.exec(text);
    if (quoted) {
      const escapes = { n: "\n", t: "\t", "\\": "\\", "'": "'", '"': '"' };
      return { value: quoted[2].replace(/\\(.)/g, (m, c) => (c in escapes ? escapes[c] : m)), float: false };
    }
    const code = text.replace(/#.*$/, "").trim();
    if (code === "True" || code === "False") return { value: code === "True", float: false };
    const number = /^([+-]?)\s*(0[xX][0-9a-fA-F_]+|(?:\d[\d_]*)?(?:\.[\d_]*)?(?:[eE][+-]?\d[\d_]*)?)$/.exec(code);
    if (!number || !/^(0[xX]|\.?\d)/.test(number[2]) || /(^|[^\dA-Fa-f])_|_($|[^\dA-Fa-f])/.test(number[2])) return null;
    const digits = number[2].replace(/_/g, "");
    const value = Number(digits) * (number[1] === "-" ? -1 : 1);
    if (!isFinite(value)) return null;
    return { value, float: !/^0[xX]/.test(digits) && /[.eE]/.test(digits) };
  }

  /** credit.py changes_from_diff(): the hyperparameters a unified diff of train.py sets (its
   *  '+NAME = literal' lines), in order, as [{name, value, float}]: what changed, never what it is worth. */
  function changesFromDiff(diff) {
    const out = new Map();
    for (let line of String(diff || "").split("\n")) {
      if (line.endsWith("\r")) line = line.slice(0, -1);
      const m = /^\+([A-Z][A-Z0-9_]*)\s*=(?!=)(.*)$/.exec(line);
      if (!m) continue;
      const literal = parseLiteral(m[2]);
      if (!literal) continue;
      if (out.has(m[1])) Object.assign(out.get(m[1]), literal);  // a later line wins, in the first one's place
      else out.set(m[1], { name: m[1], value: literal.value, float: literal.float });
    }
    return [...out.values()];
  }

  /** What a discovery event says it changed: its `hparams` when it has some, else its diff's block lines. */
  function discoveryChanges(e) {
    const h = e.hparams;
    if (h && typeof h === "object" && !Array.isArray(h) && Object.keys(h).length) {
      return Object.keys(h).map((name) => ({ name, value: h[name], float: false }));
    }
    return changesFromDiff(e.diff);
  }

  function signed(x) {
    return (x < 0 ? "-" : "+") + Math.abs(x).toFixed(4);
  }

  /** credit.py measured(): an effect beyond 2 standard errors. */
  function measured(effect) {
    return Math.abs(effect.effect) > 2 * effect.se;
  }

  /** One line of credit for a changed name with its `effect` event, or without one (`effect` null). */
  function creditLine(label, effect, single) {
    if (!effect) {
      return { label, status: single ? "not measured" : "combined", effect: null,
        text: `${label}: ${single ? "not measured" : "combined, not ablated"}` };
    }
    const how = `${effect.kind === "ablation" ? "ablation" : "single"}, SE ${effect.se.toFixed(4)}`;
    if (!measured(effect)) {
      return { label, status: "no effect", effect,
        text: `${label}: no measurable effect (${signed(effect.effect)} bpb, ${how})` };
    }
    return { label, status: effect.effect > 0 ? "found" : "hurt", effect,
      text: `${label} ${signed(effect.effect)} bpb (${how})` };
  }

  function shortName(id) {
    if (id === undefined || id === null) return "?";
    id = String(id);
    // libp2p peer ids share their first characters (12D3KooW…, Qm…): their tail tells them apart
    if (/^(12D3KooW|16Uiu2)/.test(id) && id.length > 20) return "…" + id.slice(-6);
    if (id.length <= 14) return id;
    if (/^[a-z][a-z0-9]*([-_.][a-z0-9]+)+$/i.test(id) && id.length <= 24) return id;
    return id.slice(0, 8);
  }

  function shortId(hash) {
    return hash ? String(hash).slice(0, 8) : "?";
  }

  function linkKey(a, b) {
    return a < b ? a + "|" + b : b + "|" + a;
  }

  function finite(x) {
    return typeof x === "number" && isFinite(x);
  }

  function freshChanges(all) {
    return {
      full: all,             // everything must be redrawn (after a reset)
      peers: new Set(),      // peers whose node changed (added, tier, left)
      links: new Set(),      // link keys added or removed
      touches: [],           // {kind: author|received|adopted|reject, id, peer, from} for flashes
      counters: all, spread: all, discoveries: all, leaderboard: all, trajectory: all, feed: all,
    };
  }

  class Swarm {
    constructor() {
      this.reset();
    }

    reset() {
      this.t = 0;
      this.applied = 0;
      this.peers = new Map();        // id -> {id, name, tier, role, alive, order, experiments, best, head}
      this.alive = 0;
      this.links = new Map();        // "a|b" -> {a, b}
      this.discoveries = new Map();  // id -> discovery (see discovery())
      this.discoveryOrder = [];      // ids, oldest first
      this.effects = new Map();      // "tier:state" -> Map(name -> effect event), the last of a name wins
      this.states = new Map();       // state hash -> {state, parent, via, val, test, peer, tier, t, description, diff}
      this.best = new Map();         // tier -> {tier, val, test, state, peer, t, discovery}
      this.trajectory = new Map();   // tier -> [[t, val], ...] (each improvement of the tier's best)
      this.tierOrder = [];
      this.feed = [];                // newest last, at most FEED_KEEP
      this.counters = { peers: 0, links: 0, experiments: 0, keeps: 0, discards: 0, crashes: 0,
        discoveries: 0, receipts: 0, adoptions: 0, rejected: 0 };
      this.lastTouched = null;       // id of the discovery that spread most recently
      this.changes = freshChanges(true);
    }

    takeChanges() {
      const c = this.changes;
      this.changes = freshChanges(false);
      return c;
    }

    // --- peers and links -------------------------------------------------------------------

    tier(name) {
      name = name || "unknown";
      if (!this.tierOrder.includes(name)) {
        this.tierOrder.push(name);
        this.tierOrder.sort((a, b) => tierRank(a, this.tierOrder) - tierRank(b, this.tierOrder));
      }
      return name;
    }

    peer(id, tier) {
      let p = this.peers.get(id);
      if (!p) {
        p = { id, name: shortName(id), tier: this.tier(tier), role: null, alive: true, order: this.peers.size,
          experiments: 0, keeps: 0, best: null, head: null, lastStatus: null };
        this.peers.set(id, p);
        this.alive += 1;
        this.changes.peers.add(id);
        this.changes.counters = true;
      } else if (tier && p.tier !== tier) {
        p.tier = this.tier(tier);
        this.changes.peers.add(id);
      }
      return p;
    }

    join(e) {
      const p = this.peer(e.peer, e.tier);
      if (e.role) p.role = e.role;
      if (!p.alive) {
        p.alive = true;
        this.alive += 1;
        this.changes.peers.add(p.id);
        this.changes.counters = true;
      }
    }

    leave(e) {
      const p = this.peers.get(e.peer);
      if (!p || !p.alive) return;
      p.alive = false;
      this.alive -= 1;
      this.changes.peers.add(p.id);
      for (const [key, link] of this.links) {
        if (link.a === p.id || link.b === p.id) {
          this.links.delete(key);
          this.changes.links.add(key);
        }
      }
      this.changes.counters = true;
    }

    link(e) {
      if (!e.a || !e.b || e.a === e.b) return;
      this.peer(e.a);
      this.peer(e.b);
      const key = linkKey(e.a, e.b);
      if (!this.links.has(key)) {
        this.links.set(key, { a: e.a, b: e.b });
        this.changes.links.add(key);
        this.changes.counters = true;
      }
    }

    unlink(e) {
      const key = linkKey(e.a, e.b);
      if (this.links.delete(key)) {
        this.changes.links.add(key);
        this.changes.counters = true;
      }
    }

    // --- research --------------------------------------------------------------------------

    experiment(e) {
      const p = this.peer(e.peer, e.tier);
      p.experiments += 1;
      p.lastStatus = e.status;
      const c = this.counters;
      c.experiments += 1;
      if (e.status === "keep") { c.keeps += 1; p.keeps += 1; }
      else if (e.status === "discard") c.discards += 1;
      else if (e.status === "crash") c.crashes += 1;
      this.feed.push({ t: e.t, peer: p.id, tier: p.tier, description: e.description || "", val: e.val_bpb,
        test: e.test_bpb, status: e.status || "?" });
      if (this.feed.length > FEED_KEEP * 2) this.feed = this.feed.slice(-FEED_KEEP);
      this.changes.feed = this.changes.counters = true;
      if (finite(e.val_bpb) && (e.status === "keep" || e.status === "baseline")) {
        if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
        if (e.state && !this.states.has(e.state)) {
          this.states.set(e.state, { state: e.state, parent: null, via: null, val: e.val_bpb, test: e.test_bpb,
            peer: p.id, tier: p.tier, t: e.t, description: e.description || e.status, diff: null,
            baseline: e.status === "baseline" });
        }
        if (e.state) p.head = e.state;
        this.offerBest(p.tier, { val: e.val_bpb, test: e.test_bpb, state: e.state, peer: p.id, t: e.t, discovery: null });
      }
    }

    discovery(e) {
      const first = !this.discoveries.has(e.id) || this.discoveries.get(e.id).placeholder;
      const d = this.ensureDiscovery(e.id, e.t, e.peer);
      const p = this.peer(e.peer, e.tier);
      Object.assign(d, { peer: p.id, tier: p.tier, state: e.state || e.id, parent: e.parent || null,
        val: e.val_bpb, test: e.test_bpb, description: e.description || "", diff: e.diff || "",
        changed: discoveryChanges(e), placeholder: false });
      if (e.t < d.t) d.t = e.t;
      // real delivery counts from its first publication (another agent may find the same state later)
      if (!finite(d.wall) && finite(e.wall)) { d.wall = e.wall; d.firstAuthor = p.id; }
      if (first) this.counters.discoveries += 1;
      this.states.set(d.state, { state: d.state, parent: d.parent, via: d.id, val: d.val, test: d.test,
        peer: p.id, tier: p.tier, t: e.t, description: d.description, diff: d.diff, baseline: false });
      if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
      p.head = d.state;
      this.reach(d, p.id, e.t);
      this.offerBest(p.tier, { val: d.val, test: d.test, state: d.state, peer: p.id, t: e.t, discovery: d.id });
      this.changes.touches.push({ kind: "author", id: d.id, peer: p.id, from: null });
      this.lastTouched = d.id;
      this.changes.discoveries = this.changes.spread = this.changes.counters = true;
    }

    /** A paired measurement of one changed name of a kept state (see credit.py). */
    effect(e) {
      if (!e.state || !e.name || !finite(e.effect) || !finite(e.se)) return;
      const key = (e.tier || "") + ":" + e.state;
      if (!this.effects.has(key)) this.effects.set(key, new Map());
      this.effects.get(key).set(e.name, { name: e.name, value: e.value, effect: e.effect, se: e.se,
        seeds: Array.isArray(e.seeds) ? e.seeds : null, kind: e.kind, peer: e.peer || null, t: e.t });
      this.changes.discoveries = true;
    }

    /** The credit of discovery `d`: one line per changed name with its own measured effect, then
     *  the unmeasured names ("combined, not ablated", or "not measured" for a single change). A
     *  measured name the diff did not show (an unparsed literal) is still listed with its effect. */
    credit(d) {
      if (!d || d.placeholder) return [];
      const effects = this.effects.get((d.tier || "") + ":" + d.state) || new Map();
      const changed = d.changed || [];
      const single = changed.length === 1;
      const lines = [], unmeasured = [];
      for (const c of changed) {
        const label = technique(c.name, c.value, c.float);
        if (effects.has(c.name)) lines.push(creditLine(label, effects.get(c.name), single));
        else unmeasured.push(label);
      }
      for (const [name, effect] of effects) {
        if (!changed.some((c) => c.name === name)) lines.push(creditLine(technique(name, effect.value), effect, false));
      }
      if (unmeasured.length === 1 && single) lines.push(creditLine(unmeasured[0], null, true));
      else if (unmeasured.length) lines.push(creditLine(unmeasured.join(", "), null, false));
      return lines;
    }

    receipt(e) {
      const d = this.ensureDiscovery(e.id, e.t, e.from);
      const p = this.peer(e.peer);
      if (e.from) this.peer(e.from);
      this.counters.receipts += 1;
      // a peer's first delivery by gossip; a receipt inferred from its register ("presence") is none
      if (e.via !== "presence" && !d.delivered.has(p.id)) d.delivered.set(p.id, { t: e.t, wall: e.wall });
      this.reach(d, p.id, e.t, e.from || null);
      this.changes.touches.push({ kind: "received", id: d.id, peer: p.id, from: e.from || null });
      this.lastTouched = d.id;
    }

    adoption(e) {
      const d = this.ensureDiscovery(e.id, e.t, null);
      const p = this.peer(e.peer, e.tier);  // an Adoption may arrive before its author's Presence
      this.reach(d, p.id, e.t);
      if (!d.adopted.has(p.id)) {
        d.adopted.set(p.id, e.t);
        d.version += 1;
        this.counters.adoptions += 1;
      }
      if (finite(e.val_bpb) && (p.best === null || e.val_bpb < p.best)) p.best = e.val_bpb;
      if (e.state) {
        p.head = e.state;
        if (!this.states.has(e.state)) {
          this.states.set(e.state, { state: e.state, parent: d.state, via: d.id, val: e.val_bpb, test: null,
            peer: p.id, tier: p.tier, t: e.t, description: "adopted " + shortId(d.id) + " onto its own head",
            diff: null, baseline: false, adoption: true });
        }
      }
      if (d.tier && p.tier && p.tier !== "unknown" && p.tier !== d.tier && finite(e.val_bpb)) {
        // a discovery carried over to another tier counts for that tier once measured there
        this.offerBest(p.tier, { val: e.val_bpb, test: null, state: e.state || d.state, peer: d.peer || p.id,
          t: e.t, discovery: d.id });
      }
      this.changes.touches.push({ kind: "adopted", id: d.id, peer: p.id, from: null });
      this.lastTouched = d.id;
      this.changes.discoveries = this.changes.spread = this.changes.counters = true;
    }

    reject(e) {
      if (e.peer) this.peer(e.peer);
      this.counters.rejected += 1;
      this.changes.touches.push({ kind: "reject", id: null, peer: e.peer, from: e.from || null });
      this.changes.counters = true;
    }

    // --- spread ------------------------------------------------------------------------------

    ensureDiscovery(id, t, author) {
      let d = this.discoveries.get(id);
      if (!d) {
        d = { id, peer: author || null, tier: null, state: id, parent: null, val: null, test: null,
          description: "", diff: "", changed: [], t, has: new Map(), adopted: new Map(), via: new Map(), curve: [], reached: 0, aliveAt: 0,
          wall: null, firstAuthor: null, delivered: new Map(),  // peer -> {t, wall} of its first receipt by gossip
          t50: null, t100: null, color: DISCOVERY_COLORS[this.discoveryOrder.length % DISCOVERY_COLORS.length],
          order: this.discoveryOrder.length, version: 0, placeholder: true };
        this.discoveries.set(id, d);
        this.discoveryOrder.push(id);
        if (author) this.reach(d, this.peer(author).id, t);
      }
      return d;
    }

    reach(d, peer, t, from) {
      if (d.has.has(peer)) return;
      d.has.set(peer, t);
      if (from) d.via.set(peer, from);
      d.version += 1;
      this.sample(d, t);
      this.changes.spread = this.changes.discoveries = true;
    }

    sample(d, t) {
      let reached = 0;
      for (const id of d.has.keys()) {
        const p = this.peers.get(id);
        if (p && p.alive) reached += 1;
      }
      const alive = Math.max(this.alive, 1);
      const share = Math.min(1, reached / alive);
      const dt = Math.max(0, t - d.t);
      d.reached = reached;
      d.aliveAt = alive;
      d.curve.push([dt, share]);
      if (share >= 0.5 && d.t50 === null) d.t50 = dt;
      if (share >= 1 && d.t100 === null) d.t100 = dt;
    }

    /** Real gossip delivery of `d` by the wall clock (a replay's virtual clock releases agents in
     *  windows, so its receipts all land at a window's end): the ms from the first discovery event
     *  of `d` to each alive peer's first receipt by gossip, sorted, and the ms by which 50 % / 100 %
     *  of the peers alive now had it (its author from 0 ms; null: not by gossip). null when the
     *  events carry no `wall` (older files) or no peer received it by gossip yet. */
    delivery(d) {
      if (!d || !finite(d.wall)) return null;
      const ms = [];
      for (const [id, r] of d.delivered) {
        const p = this.peers.get(id);
        if (id !== d.firstAuthor && p && p.alive && finite(r.wall)) ms.push(1000 * (r.wall - d.wall));
      }
      if (!ms.length) return null;
      ms.sort((a, b) => a - b);
      const author = this.peers.get(d.firstAuthor);
      const alive = Math.max(this.alive, 1), start = author && author.alive ? 1 : 0;
      const by = (share) => {
        const k = Math.ceil(share * alive) - start;  // the k-th delivery brings it to `share`
        return k <= 0 ? 0 : k <= ms.length ? ms[k - 1] : null;
      };
      return { ms, t50: by(0.5), t100: by(1) };
    }

    /** True when every gossip delivery of `d` so far came at one virtual time (within a second):
     *  its spread curve is one step that tells nothing of how fast gossip was. */
    collapsed(d) {
      const ts = [...d.delivered.values()].map((r) => r.t).filter(finite);
      return ts.length > 1 && Math.max(...ts) - Math.min(...ts) < 1;
    }

    /** Share of the peers alive now that have discovery `d`. */
    share(d) {
      let reached = 0;
      for (const id of d.has.keys()) {
        const p = this.peers.get(id);
        if (p && p.alive) reached += 1;
      }
      return { reached, alive: this.alive, share: this.alive ? reached / this.alive : 0 };
    }

    // --- where the swarm stands -----------------------------------------------------------

    offerBest(tier, candidate) {
      if (!finite(candidate.val)) return;
      const cur = this.best.get(tier);
      const tie = cur && Math.abs(candidate.val - cur.val) <= 1e-12;
      const better = !cur || (!tie && candidate.val < cur.val) || (tie && candidate.state && cur.state &&
        candidate.state < cur.state); // ties go to the lower state hash, as the swarm's register does
      if (!better) return;
      this.best.set(tier, Object.assign({ tier }, candidate));
      if (!this.trajectory.has(tier)) this.trajectory.set(tier, []);
      this.trajectory.get(tier).push([candidate.t, candidate.val]);
      this.changes.leaderboard = this.changes.trajectory = true;
    }

    /** The chain of states that led to a tier's best, oldest first. */
    lineage(tier) {
      const best = this.best.get(tier);
      const chain = [];
      if (!best || !best.state) return { chain, missingParent: null };
      const seen = new Set();
      let cur = best.state;
      let missingParent = null;
      while (cur && !seen.has(cur) && chain.length < 500) {
        seen.add(cur);
        const s = this.states.get(cur);
        if (!s) { missingParent = chain.length ? cur : null; break; }
        chain.push(s);
        cur = s.parent;
      }
      chain.reverse();
      return { chain, missingParent };
    }

    apply(e) {
      if (!e || typeof e !== "object") return;
      const handler = HANDLERS[e.type];
      if (typeof e.t === "number" && e.t > this.t) this.t = e.t;
      this.applied += 1;
      if (handler) handler.call(this, e);
      this.counters.peers = this.alive;
      this.counters.links = this.links.size;
    }
  }

  const HANDLERS = {
    join: Swarm.prototype.join, leave: Swarm.prototype.leave, link: Swarm.prototype.link,
    unlink: Swarm.prototype.unlink, experiment: Swarm.prototype.experiment,
    discovery: Swarm.prototype.discovery, receipt: Swarm.prototype.receipt,
    adoption: Swarm.prototype.adoption, reject: Swarm.prototype.reject, effect: Swarm.prototype.effect,
  };

  function tierRank(name, order) {
    const known = KNOWN_TIERS.indexOf(name);
    if (known >= 0) return known;
    if (name === "unknown") return 1000;
    return 100 + order.indexOf(name);
  }

  function tierColor(name, order) {
    if (TIER_COLORS[name]) return TIER_COLORS[name];
    if (name === "unknown") return "#64748b";
    const extras = order.filter((t) => !TIER_COLORS[t] && t !== "unknown");
    return EXTRA_TIER_COLORS[Math.max(0, extras.indexOf(name)) % EXTRA_TIER_COLORS.length];
  }

  global.SwarmModel = { Swarm, shortName, shortId, linkKey, tierColor, finite, technique, changesFromDiff, formatG };
})(window);
