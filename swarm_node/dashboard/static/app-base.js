/* The dashboard page: loads events, plays them into the model (model-*.js), draws the views.
 * Its parts share window.SwarmApp and load in this order (index.html):
 *
 *   app-base.js     the page's state, what a curve's time is, formatting: what every part uses
 *   app-events.js   loading the events
 *   app-player.js   playing them into the model; the replay controls (play, speed, scrubber)
 *   app-graph.js    the peer graph, with the focused discovery's wave, and the panel under it
 *   app-charts.js   the spread chart and the best val_bpb over time
 *   app-tables.js   the discoveries, the leaderboard, the experiment feed and the diff dialog
 *   app.js          the header, the clicks, the frame loop and the start
 *
 * Events come from the server (/api/events, then /api/stream) or, in an exported snapshot,
 * from the page itself (<script id="swarm-data">). In live and home modes they are shown as
 * they arrive; in replay and snapshot modes the page plays them by their virtual time `t`.
 *
 * Drawing is batched: each animation frame applies events for a few milliseconds, then updates
 * the graph incrementally; tables redraw a few times a second and charts about twice a second.
 * window.swarmStats tells a test how fast that went.
 */
"use strict";

(function (global) {
  const { Swarm, shortName, tierColor, finite } = window.SwarmModel;
  const $ = (selector) => document.querySelector(selector);

  const stats = (window.swarmStats = {
    ready: false, mode: null, eventsLoaded: 0, eventsApplied: 0, frames: 0, applyMs: 0, renderMs: 0,
    maxFrameGapMs: 0, maxFrameMs: 0, playStart: null, playEnd: null, playEvents: 0,
    eventsPerSecond: null, maxFrameGapDuringPlayMs: 0, playFrames: 0,
    parts: { graph: 0, tables: 0, charts: 0 }, partsMax: { graph: 0, tables: 0, charts: 0 },
  });

  function timed(part, fn) {
    const start = performance.now();
    fn();
    const ms = performance.now() - start;
    stats.parts[part] += ms;
    if (ms > stats.partsMax[part]) stats.partsMax[part] = ms;
  }

  const app = {
    mode: "live", title: "", events: [], first: 0, cursor: 0, model: new Swarm(), vt: 0, lastT: 0,
    playing: false, speed: 100, follow: false, pinned: null, selectedPeer: null, jumped: false,
    dirty: {}, lastTables: 0, lastCharts: 0, lastHeader: 0,
  };

  const replayLike = () => app.mode === "replay" || app.mode === "snapshot";

  /* What a spread curve's time `t` is: "virtual" in a replay (its clock releases agents in windows
     of virtual time, so receipts land at a window's end and the curve hides how fast gossip was),
     "real" on a live node, "unknown" in a snapshot not titled "replay …" (`report --html` names them). */
  const clockKind = () => (app.mode === "replay" || (app.mode === "snapshot" && /^replay\b/.test(app.title)) ? "virtual" :
    app.mode === "snapshot" ? "unknown" : "real");
  const CLOCK_NOTE = {
    virtual: "virtual time: the replay clock releases agents in windows, so receipts land at a window's end",
    real: "real time on this node", unknown: "the events' time t (virtual in a replay)" };
  const AXIS_LABEL = { virtual: "virtual time since the discovery was born (replay clock, released in windows)",
    real: "time since the discovery was born (real time on this node)",
    unknown: "time since the discovery was born (the events' time t)" };
  const REAL_LABEL = "real gossip delivery (wall clock of the machine that ran the agents)";

  /** Wall-clock delivery of `d` (model.delivery) where its curve's time hides it: in a replay, or
   *  when all its receipts share one time; null on a live node (its `t` is real) or without `wall`. */
  function realDelivery(d) {
    const clock = clockKind();
    return clock === "virtual" || (clock === "unknown" && app.model.collapsed(d)) ? app.model.delivery(d) : null;
  }
  function realHtml(d) {
    const r = realDelivery(d);
    return r ? `${REAL_LABEL}: 50 % in <b>${fmtDur(finite(r.t50) ? r.t50 / 1000 : null)}</b> · 100 % in ` +
      `<b>${fmtDur(finite(r.t100) ? r.t100 / 1000 : null)}</b> · ${r.ms.length} gossip receipts` : "";
  }

  // --- formatting --------------------------------------------------------------------------

  function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  const pad = (n) => String(Math.floor(n)).padStart(2, "0");
  function fmtClock(t) {
    t = Math.max(0, t || 0);
    return `${Math.floor(t / 3600)}:${pad((t % 3600) / 60)}:${pad(t % 60)}`;
  }
  function fmtDur(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    if (s < 0.01) return `${(s * 1000).toFixed(1)} ms`;
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${pad((s % 3600) / 60)}m`;
  }
  /** A duration on an axis whose ticks are `incr` seconds apart: as precise as the ticks need. */
  function fmtSpan(v, incr) {
    if (v >= 1 || !(incr > 0)) return fmtDur(v);
    const digits = Math.max(0, Math.min(3, -Math.floor(Math.log10(incr * 1000) + 1e-9)));
    return `${(v * 1000).toFixed(digits)} ms`;
  }
  const fmtVal = (v) => (finite(v) ? v.toFixed(4) : "—");
  function fmtDelta(v) {
    if (!finite(v)) return "";
    return (v < 0 ? "−" : "+") + Math.abs(v).toFixed(4);
  }
  const colorOf = (tier) => tierColor(tier, app.model.tierOrder);
  function peerTag(id) {
    const p = app.model.peers.get(id);
    const tier = p ? p.tier : "unknown";
    return `<span class="peer" title="${esc(id)}"><i style="background:${colorOf(tier)}"></i>${esc(shortName(id))}</span>`;
  }

  /** A discovery's credit (model.credit): each changed name with its own measured paired effect,
   *  or "combined, not ablated" / "not measured". A technique is named as found only when measured. */
  const CREDIT_CLASS = { found: "found", hurt: "hurt", "no effect": "none", combined: "unmeasured", "not measured": "unmeasured" };
  function creditHtml(d, separator) {
    if (!d || d.placeholder) return "";
    const lines = app.model.credit(d);
    if (!lines.length) return '<span class="muted">no hyperparameter changed</span>';
    return lines.map((c) => {
      const seeds = c.effect && c.effect.seeds ? ` over seeds [${c.effect.seeds.join(", ")}]` : "";
      const title = c.effect ? `paired ${c.effect.kind === "ablation" ? "ablation" : "single change"}${seeds}` :
        c.status === "combined" ? "kept together with other changes; no ablation measured each one's effect" :
          "no paired effect was recorded for this change";
      return `<span class="credit-line ${CREDIT_CLASS[c.status] || ""}" data-credit="${esc(c.status)}" title="${esc(title)}">${esc(c.text)}</span>`;
    }).join(separator);
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  global.SwarmApp = { $, app, stats, timed, replayLike, clockKind, CLOCK_NOTE, AXIS_LABEL, REAL_LABEL, realDelivery,
    realHtml, esc, pad, fmtClock, fmtDur, fmtSpan, fmtVal, fmtDelta, colorOf, peerTag, creditHtml, setText };
})(window);
