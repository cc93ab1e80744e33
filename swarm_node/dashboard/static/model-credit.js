/* The swarm model's credit (see model-base.js for its parts): what a kept change changed, which
 * technique each change is, and the Swarm's `effect` and `credit` methods.
 */
"use strict";

(function (M) {
  const { finite } = M;

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

  /** The Swarm's methods on credit (model-swarm.js adds them to it). */
  class SwarmCredit {
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
  }

  Object.assign(M, { technique, changesFromDiff, formatG, discoveryChanges, SwarmCredit });
})(window.SwarmModel);
