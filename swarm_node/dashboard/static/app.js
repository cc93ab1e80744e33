/* The dashboard page: loads events, plays them into the model (model.js), draws the views.
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

(function () {
  const { Swarm, shortName, shortId, linkKey, tierColor, finite } = window.SwarmModel;
  const $ = (selector) => document.querySelector(selector);
  const params = new URLSearchParams(location.search);

  const APPLY_BUDGET_MS = 8;     // per frame, for applying events
  const HEADER_EVERY_MS = 90;    // counters, clock and scrubber
  const TABLES_EVERY_MS = 300;
  const CHARTS_EVERY_MS = 500;
  const FIT_EVERY_MS = 600;
  const FLASH_MS = 650;
  const FADE_AFTER_MS = 9000;    // a discovery's highlight fades once it stops spreading
  const SPREAD_SERIES = 8;       // discoveries drawn in the spread chart
  const TABLE_ROWS = 40;
  const FEED_ROWS = 40;
  const SPEEDS = [1, 10, 30, 100, 300, 1000, "max"];
  const COLORS = { author: "#ffd23f", received: "#ff8c42", adopted: "#3ddc97", reject: "#ef4444" };

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

  // --- loading -----------------------------------------------------------------------------

  function addEvent(index, event) {
    if (index < app.first + app.events.length) return; // seen already (a reconnect resumed a bit early)
    app.events.push(event);
    if (typeof event.t === "number" && event.t > app.lastT) app.lastT = event.t;
    stats.eventsLoaded = app.events.length;
  }

  function connectStream() {
    const stream = new EventSource(`api/stream?since=${app.first + app.events.length}`);
    stream.onmessage = (message) => {
      const index = message.lastEventId === "" ? app.first + app.events.length : Number(message.lastEventId);
      addEvent(index, JSON.parse(message.data));
    };
    stream.addEventListener("reset", () => location.reload());
    stream.onopen = () => setConnection("connected");
    stream.onerror = () => setConnection(stream.readyState === EventSource.CLOSED ? "closed" : "reconnecting…");
    window.addEventListener("pagehide", () => stream.close());
  }

  function setConnection(text) {
    const el = $("#connection");
    el.textContent = text;
    el.className = text === "connected" ? "ok" : "warn";
  }

  async function load() {
    const embedded = document.getElementById("swarm-data");
    if (embedded) {
      const data = JSON.parse(embedded.textContent);
      app.mode = "snapshot";
      app.title = data.title || "snapshot";
      data.events.forEach((e, i) => addEvent(i, e));
      $("#connection").textContent = data.exported ? `exported ${data.exported}` : "";
      return;
    }
    const meta = await (await fetch("api/meta")).json();
    app.mode = meta.mode;
    app.title = meta.title;
    app.follow = Boolean(meta.follow);
    const response = await fetch("api/events?since=0");
    app.first = Number(response.headers.get("X-First-Index")) || 0; // older events were dropped by the server
    const events = await response.json();
    events.forEach((e, i) => addEvent(app.first + i, e));
    connectStream();
  }

  // --- playing -----------------------------------------------------------------------------

  /** Apply events up to virtual time `limit`, for at most `budget` ms; true when it stopped on time. */
  function applyUntil(limit, budget) {
    const start = performance.now();
    const events = app.events;
    const model = app.model;
    let n = 0;
    while (app.cursor < events.length) {
      const e = events[app.cursor];
      if (typeof e.t === "number" && e.t > limit) return false;
      model.apply(e);
      app.cursor += 1;
      n += 1;
      if ((n & 127) === 0 && performance.now() - start > budget) return true;
    }
    return false;
  }

  function advance(dt) {
    if (!replayLike()) {
      applyUntil(Infinity, APPLY_BUDGET_MS);
      app.vt = app.model.t;
      return;
    }
    if (!app.playing) return;
    if (app.speed === "max") {
      applyUntil(Infinity, APPLY_BUDGET_MS);
      app.vt = app.model.t;
    } else {
      app.vt += dt * app.speed;
      if (app.cursor >= app.events.length) app.vt = Math.min(app.vt, app.lastT); // wait for more
      applyUntil(app.vt, APPLY_BUDGET_MS * 2);
    }
    if (stats.playStart !== null && stats.playEnd === null && app.cursor >= app.events.length) {
      stats.playEnd = performance.now();
      const seconds = (stats.playEnd - stats.playStart) / 1000;
      stats.eventsPerSecond = Math.round(stats.playEvents / Math.max(seconds, 1e-3));
    }
  }

  function play(on) {
    app.playing = on;
    if (on && app.cursor >= app.events.length && app.vt >= app.lastT) seek(0);
    if (on) {
      stats.playStart = performance.now();
      stats.playEnd = null;
      stats.eventsPerSecond = null;
      stats.playEvents = app.events.length - app.cursor;
      stats.maxFrameGapDuringPlayMs = 0;
      stats.playFrames = 0;
    }
    $("#play").textContent = on ? "❚❚ pause" : "▶ play";
    $("#play").setAttribute("aria-pressed", String(on));
  }

  function seek(t) {
    if (t < app.model.t || t < app.vt) {
      app.model.reset();
      app.cursor = 0;
    }
    applyUntil(t, Infinity);
    app.vt = t;
    app.jumped = true; // no flashes for a jump
  }

  function setupPlayer() {
    const player = $("#player");
    if (!replayLike()) {
      player.hidden = true;
      return;
    }
    player.hidden = false;
    const select = $("#speed");
    select.innerHTML = SPEEDS.map((s) => `<option value="${s}">${s === "max" ? "max · follow" : s + "×"}</option>`).join("");
    const asked = params.get("speed");
    app.speed = asked === "max" ? "max" : Number(asked) > 0 ? Number(asked) : app.follow ? "max" : 100;
    if (!SPEEDS.includes(app.speed)) select.insertAdjacentHTML("beforeend", `<option value="${app.speed}">${app.speed}×</option>`);
    select.value = String(app.speed);
    select.addEventListener("change", () => {
      app.speed = select.value === "max" ? "max" : Number(select.value);
      if (app.playing) play(true);
    });
    $("#play").addEventListener("click", () => play(!app.playing));
    const scrub = $("#scrub");
    let pending = null;
    scrub.addEventListener("input", () => {
      if (pending === null) requestAnimationFrame(() => { seek(pending); pending = null; });
      pending = Number(scrub.value);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === " " && e.target === document.body) { e.preventDefault(); play(!app.playing); }
    });
    const at = params.get("at") || (app.mode === "snapshot" ? "end" : null);
    if (at === "end") {
      seek(app.lastT);
      play(false);
    } else {
      if (at !== null && isFinite(Number(at))) seek(Number(at));
      play(params.get("play") !== "0");
    }
  }

  function renderPlayer() {
    if (!replayLike()) return;
    const scrub = $("#scrub");
    const max = Math.max(app.lastT, 0.001);
    if (Number(scrub.max) !== max) scrub.max = String(max);
    if (document.activeElement !== scrub) scrub.value = String(Math.min(app.vt, max));
    setText($("#time"), `${fmtClock(app.vt)} / ${fmtClock(app.lastT)}`);
    const ended = app.cursor >= app.events.length && app.vt >= app.lastT;
    setText($("#play-state"), ended ? (app.mode === "snapshot" ? "end of the recording" : "end — waiting for more events") : "");
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  // --- header ------------------------------------------------------------------------------

  const COUNTERS = [["peers", "peers"], ["links", "links"], ["experiments", "experiments"], ["keeps", "keeps"],
    ["discoveries", "discoveries"], ["adoptions", "adoptions"], ["rejected", "rejected msgs"]];

  function setupHeader() {
    $("#counters").innerHTML = COUNTERS.map(([key, label]) =>
      `<div class="counter" data-counter="${key}"><b>0</b><span>${label}</span></div>`).join("");
    const badge = $("#mode");
    badge.textContent = { live: "live", home: "live · home", replay: "replay", snapshot: "snapshot" }[app.mode] || app.mode;
    badge.className = `badge ${app.mode}`;
    $("#title").textContent = app.title;
    const clock = clockKind();
    $("#spread-what").textContent = `share of peers that have each discovery, by time since it was born · ${CLOCK_NOTE[clock]}`;
    if (clock === "virtual") {
      for (const th of document.querySelectorAll("#discoveries th.reach-time")) th.insertAdjacentHTML("beforeend", " <small>virtual · real</small>");
    }
    document.title = `swarm-node · ${app.title}`;
  }

  function renderCounters() {
    const c = app.model.counters;
    for (const [key] of COUNTERS) setText($(`[data-counter="${key}"] b`), String(c[key]));
    setText($("#clock"), fmtClock(app.vt));
  }

  // --- peer graph --------------------------------------------------------------------------

  const graph = {
    cy: null, shown: { id: null, faded: false }, flashes: new Map(), lastFit: 0,
    needFit: false, lastActivity: 0, layoutCount: -1, wave: null, tree: new Set(),

    setup() {
      this.cy = cytoscape({
        container: $("#graph"), elements: [], layout: { name: "preset" }, boxSelectionEnabled: false,
        autoungrabify: true, minZoom: 0.2, maxZoom: 3, style: this.style(),
      });
      this.cy.on("tap", "node", (e) => { app.selectedPeer = e.target.id(); app.dirty.tables = true; });
      this.cy.on("tap", (e) => { if (e.target === this.cy) { app.selectedPeer = null; app.dirty.tables = true; } });
      new ResizeObserver(() => { this.cy.resize(); this.needFit = true; }).observe($("#graph"));
    },

    style() {
      const halo = (color, padding, opacity) => ({ "underlay-color": color, "underlay-padding": padding, "underlay-opacity": opacity });
      return [
        { selector: "node", style: Object.assign({
          "background-color": "data(color)", label: "data(name)", color: "#c8d3e6", "font-size": 12,
          "text-valign": "center", "text-halign": "center", width: 22, height: 22, "border-width": 2,
          "border-color": "#0d1324", "underlay-shape": "ellipse", "text-outline-color": "#0d1324",
          "text-outline-width": 2, "transition-property": "border-color, border-width, underlay-opacity, underlay-padding, width, height",
          "transition-duration": 300 }, halo("#ffffff", 0, 0)) },
        { selector: 'node[ha = "left"]', style: { "text-halign": "left", "text-margin-x": -4 } },
        { selector: 'node[ha = "right"]', style: { "text-halign": "right", "text-margin-x": 4 } },
        { selector: 'node[va = "top"]', style: { "text-valign": "top", "text-margin-y": -4 } },
        { selector: 'node[va = "bottom"]', style: { "text-valign": "bottom", "text-margin-y": 4 } },
        { selector: "node.gone", style: { "background-color": "#2a3346", color: "#56627a", "border-style": "dashed", "border-color": "#56627a" } },
        { selector: "node.received", style: Object.assign({ "border-color": COLORS.received, "border-width": 4 }, halo(COLORS.received, 5, 0.3)) },
        { selector: "node.adopted", style: Object.assign({ "border-color": COLORS.adopted, "border-width": 5 }, halo(COLORS.adopted, 7, 0.45)) },
        { selector: "node.author", style: Object.assign({ "border-color": COLORS.author, "border-width": 6, width: 32, height: 32, "z-index": 10, "font-weight": "bold", color: "#fff" }, halo(COLORS.author, 12, 0.5)) },
        { selector: "node.flash", style: { "underlay-padding": 16, "underlay-opacity": 0.85 } },
        { selector: "node.rejecting", style: Object.assign({ "border-color": COLORS.reject }, halo(COLORS.reject, 10, 0.6)) },
        { selector: "node.selected", style: { "border-color": "#ffffff", "border-width": 3 } },
        { selector: "edge", style: { "curve-style": "haystack", "haystack-radius": 0, width: 1.2, "line-color": "#3a4a6b", opacity: 0.7 } },
        { selector: "edge.tree", style: { width: 2.2, "line-color": COLORS.received, opacity: 0.75, "z-index": 4 } },
        { selector: "edge.carry", style: { width: 3.5, "line-color": COLORS.received, opacity: 1, "z-index": 5 } },
        { selector: "edge.carry-reject", style: { width: 3, "line-color": COLORS.reject, opacity: 1, "z-index": 5 } },
      ];
    },

    /** Peers on one circle, grouped into arcs by tier, labels outside. */
    positions() {
      const model = app.model;
      const byTier = model.tierOrder.map((tier) => [...model.peers.values()].filter((p) => p.tier === tier)
        .sort((a, b) => a.order - b.order)).filter((g) => g.length);
      const count = byTier.reduce((n, g) => n + g.length, 0);
      const gaps = byTier.length > 1 ? byTier.length : 0;
      const slots = Math.max(count + gaps, 1);
      const radius = Math.max(90, (slots * 40) / (2 * Math.PI));
      const out = new Map();
      let slot = 0;
      for (const group of byTier) {
        for (const p of group) {
          const angle = -Math.PI / 2 + (2 * Math.PI * (slot + (gaps ? 0.5 : 0))) / slots;
          const cos = Math.cos(angle), sin = Math.sin(angle);
          out.set(p.id, { x: radius * cos, y: radius * sin,
            ha: cos > 0.35 ? "right" : cos < -0.35 ? "left" : "center",
            va: sin > 0.35 ? "bottom" : sin < -0.35 ? "top" : "center" });
          slot += 1;
        }
        if (gaps) slot += 1;
      }
      return out;
    },

    nodeData(p, pos) {
      return { id: p.id, name: p.name, tier: p.tier, color: colorOf(p.tier), ha: pos.ha, va: pos.va };
    },

    rebuild() {
      const model = app.model;
      const pos = this.positions();
      this.cy.batch(() => {
        this.cy.elements().remove();
        this.cy.add([...model.peers.values()].map((p) => ({ group: "nodes", data: this.nodeData(p, pos.get(p.id)),
          position: { x: pos.get(p.id).x, y: pos.get(p.id).y }, classes: p.alive ? "" : "gone" })));
        this.cy.add([...model.links.entries()].map(([key, l]) => ({ group: "edges", data: { id: "e:" + key, source: l.a, target: l.b } })));
      });
      this.flashes.clear();
      this.shown = { id: null, faded: false };
      this.wave = null;
      this.tree = new Set();
      this.layoutCount = model.peers.size;
      this.needFit = true;
    },

    update(changes) {
      const model = app.model;
      const cy = this.cy;
      if (!changes.peers.size && !changes.links.size) return;
      cy.batch(() => {
        let relayout = false;
        for (const id of changes.peers) {
          const p = model.peers.get(id);
          let node = cy.getElementById(id);
          if (!node.length) {
            node = cy.add({ group: "nodes", data: { id, name: p.name, tier: p.tier, color: colorOf(p.tier) } });
            relayout = true;
          } else if (node.data("tier") !== p.tier) {
            node.data({ tier: p.tier, color: colorOf(p.tier) });
            relayout = true;
          }
          node.toggleClass("gone", !p.alive);
          node.scratch("_hl", null);
          this.shown.id = null;
        }
        if (changes.links.size) this.shown.id = null;
        for (const key of changes.links) {
          const link = model.links.get(key);
          const edge = cy.getElementById("e:" + key);
          if (link && !edge.length) cy.add({ group: "edges", data: { id: "e:" + key, source: link.a, target: link.b } });
          else if (!link && edge.length) edge.remove();
        }
        if (relayout || this.layoutCount !== model.peers.size) {
          const pos = this.positions();
          cy.nodes().forEach((n) => {
            const p = pos.get(n.id());
            if (p) { n.position({ x: p.x, y: p.y }); n.data({ ha: p.ha, va: p.va }); }
          });
          this.layoutCount = model.peers.size;
          this.needFit = true;
        }
      });
    },

    focusId() {
      const order = app.model.discoveryOrder;
      if (app.pinned && app.model.discoveries.has(app.pinned)) return app.pinned;
      return order.length ? order[order.length - 1] : null;
    },

    /* The wave: the focused discovery as revealed so far. Receipts and adoptions are revealed one
       after the other, a few tens of ms apart, so the spread reads as a wave at any play speed. */
    newWave(d, complete) {
      const w = { id: d.id, author: d.peer, has: new Set(), adopted: new Set(), via: new Map(), queue: [], nextAt: 0 };
      if (complete) this.syncWave(w, d);
      else if (d.peer) w.has.add(d.peer);
      return w;
    },

    syncWave(w, d) {
      w.author = d.peer;
      for (const p of d.has.keys()) w.has.add(p);
      for (const p of d.adopted.keys()) w.adopted.add(p);
      for (const [p, from] of d.via) w.via.set(p, from);
      w.queue = [];
    },

    reveal(w, t, now) {
      w.has.add(t.peer);
      if (t.kind === "adopted") w.adopted.add(t.peer);
      if (t.from && !w.via.has(t.peer)) w.via.set(t.peer, t.from);
      this.flash(this.cy.getElementById(t.peer), "flash", now);
      if (t.from) this.flash(this.cy.getElementById("e:" + linkKey(t.peer, t.from)), "carry", now);
    },

    /** Light the focused discovery: its author, the peers that have it, those that adopted it. */
    highlight(now, touches) {
      const d = this.focusId() ? app.model.discoveries.get(this.focusId()) : null;
      if (!d) return;
      let changed = false;
      if (!this.wave || this.wave.id !== d.id) {
        const bornNow = touches.some((t) => t.id === d.id && t.kind === "author");
        this.wave = this.newWave(d, app.jumped || !bornNow);
        this.lastActivity = now;
        changed = true;
      }
      const w = this.wave;
      if (app.jumped) {
        this.syncWave(w, d);
        changed = true;
      } else {
        for (const t of touches) {
          if (t.id === d.id && t.kind !== "author") w.queue.push(t);
          else if (t.kind === "reject") {
            this.flash(this.cy.getElementById(t.peer), "rejecting", now);
            if (t.from) this.flash(this.cy.getElementById("e:" + linkKey(t.peer, t.from)), "carry-reject", now);
          }
        }
      }
      if (w.queue.length) {
        if (w.queue.length > 400) { this.syncWave(w, d); changed = true; } // far behind: catch up at once
        if (w.nextAt < now - 100) w.nextAt = now;
        const gap = Math.max(5, Math.min(45, 1500 / w.queue.length));
        this.cy.batch(() => {
          while (w.queue.length && w.nextAt <= now) {
            this.reveal(w, w.queue.shift(), now);
            w.nextAt += gap;
          }
        });
        this.lastActivity = now;
        changed = true;
      }
      const moving = !replayLike() || app.playing; // a paused replay or a snapshot keeps its highlight
      if (!moving) this.lastActivity = Math.max(this.lastActivity, now - FADE_AFTER_MS / 2);
      const faded = !app.pinned && moving && now - this.lastActivity > FADE_AFTER_MS;
      if (!changed && faded === this.shown.faded && this.shown.id === d.id) return;
      this.shown = { id: d.id, faded };
      this.cy.batch(() => {
        this.cy.nodes().forEach((node) => {
          const pid = node.id();
          let want = "";
          if (!faded) {
            if (pid === w.author) want = "author";
            else if (w.adopted.has(pid)) want = "adopted";
            else if (w.has.has(pid)) want = "received";
          }
          if (node.scratch("_hl") !== want) {
            node.removeClass("author adopted received");
            if (want) node.addClass(want);
            node.scratch("_hl", want);
          }
        });
        const tree = new Set();
        if (!faded) for (const [p, from] of w.via) tree.add("e:" + linkKey(p, from));
        for (const edgeId of this.tree) if (!tree.has(edgeId)) this.cy.getElementById(edgeId).removeClass("tree");
        for (const edgeId of tree) if (!this.tree.has(edgeId)) this.cy.getElementById(edgeId).addClass("tree");
        this.tree = tree;
      });
    },

    flash(ele, cls, now) {
      if (!ele.length) return;
      ele.addClass(cls);
      this.flashes.set(ele.id() + " " + cls, { ele, cls, until: now + FLASH_MS });
    },

    tick(now) {
      if (this.flashes.size) {
        this.cy.batch(() => {
          for (const [key, f] of this.flashes) {
            if (f.until <= now) { f.ele.removeClass(f.cls); this.flashes.delete(key); }
          }
        });
      }
      this.cy.nodes(".selected").forEach((n) => { if (n.id() !== app.selectedPeer) n.removeClass("selected"); });
      if (app.selectedPeer) this.cy.getElementById(app.selectedPeer).addClass("selected");
      if (this.needFit && now - this.lastFit > FIT_EVERY_MS && this.cy.nodes().length) {
        this.cy.fit(undefined, 36);
        if (this.cy.zoom() > 1.25) { this.cy.zoom(1.25); this.cy.center(); } // a few peers: keep their size
        this.lastFit = now;
        this.needFit = false;
      }
    },
  };

  function renderLegend() {
    const model = app.model;
    const counts = new Map();
    for (const p of model.peers.values()) if (p.alive) counts.set(p.tier, (counts.get(p.tier) || 0) + 1);
    const tiers = model.tierOrder.filter((t) => counts.has(t)).map((t) =>
      `<span class="tier"><i style="background:${colorOf(t)}"></i>${esc(t)} <b>${counts.get(t)}</b></span>`).join("");
    const html = `<div class="legend-tiers">${tiers || '<span class="muted">waiting for peers…</span>'}</div>
      <div class="legend-wave"><span><i class="ring author"></i>author</span><span><i class="ring received"></i>received</span>
      <span><i class="ring adopted"></i>adopted</span><span><i class="line"></i>carried over</span></div>`;
    const el = $("#legend");
    if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
  }

  function renderFocus() {
    const model = app.model;
    const el = $("#focus");
    if (app.selectedPeer && model.peers.has(app.selectedPeer)) {
      const p = model.peers.get(app.selectedPeer);
      el.innerHTML = `<div class="focus-title">${peerTag(p.id)} <span class="muted">${esc(p.id)}</span></div>
        <div>${esc(p.tier)}${p.role ? " · role " + esc(p.role) : ""} · ${p.alive ? "online" : "gone"} ·
        ${p.experiments} experiments, ${p.keeps} kept · best val_bpb <b>${fmtVal(p.best)}</b> · head
        <code>${esc(shortId(p.head))}</code></div>`;
      return;
    }
    const id = graph.focusId();
    const d = id ? model.discoveries.get(id) : null;
    if (!d) {
      el.innerHTML = '<span class="muted">No discovery yet. When a peer keeps an improvement, it lights up here and the wave spreads peer by peer.</span>';
      return;
    }
    const s = model.share(d);
    const real = realHtml(d);
    const parent = d.parent ? model.states.get(d.parent) : null;
    const delta = parent && finite(parent.val) && finite(d.val) ? ` (${fmtDelta(d.val - parent.val)})` : "";
    const note = app.pinned === d.id ? '<span class="pin">pinned · <button type="button" class="link" data-unpin>follow the newest</button></span>' :
      graph.shown.faded ? '<span class="muted">(highlight faded: no spread for a while)</span>' : "";
    el.innerHTML = `<div class="focus-title"><i class="swatch" style="background:${d.color}"></i>
      discovery <code>${esc(shortId(d.id))}</code> by ${d.peer ? peerTag(d.peer) : "?"}
      <span class="muted">${esc(d.tier || "")}</span> ${note}</div>
      <div>${esc(d.description || "")} · val_bpb <b>${fmtVal(d.val)}</b>${delta} · born at ${fmtClock(d.t)}</div>
      <div>reached <b>${s.reached}/${s.alive}</b> peers (${Math.round(100 * s.share)} %) · ${clockKind() === "virtual" ? "virtual time: " : ""}50 % in
      <b>${fmtDur(d.t50)}</b> · 100 % in <b>${fmtDur(d.t100)}</b> · adopted by <b>${d.adopted.size}</b></div>
      ${real ? `<div class="real-delivery">${real}</div>` : ""}
      <div class="credit"><span class="muted">credit</span> ${creditHtml(d, " · ")}</div>`;
  }

  // --- charts ------------------------------------------------------------------------------

  const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function fmtAxisTime(v) {
    if (v === 0) return "0";
    if (v < 60) return `${+v.toFixed(1)}s`;
    const h = Math.floor(v / 3600), m = Math.floor((v % 3600) / 60), sec = Math.round(v % 60);
    if (sec) return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
    if (m) return h ? `${h}h${pad(m)}` : `${m}m`;
    return `${h}h`;
  }

  /** Stepped paths whose line width can change without rebuilding the chart. */
  function steppedWidth(widths, index) {
    const stepped = uPlot.paths.stepped({ align: 1 });
    return (u, seriesIdx, idx0, idx1) => {
      u.series[seriesIdx].width = widths()[index] || 2;
      return stepped(u, seriesIdx, idx0, idx1);
    };
  }

  const AXIS = { stroke: "#8fa0bd", grid: { stroke: "#1f2a40", width: 1 }, ticks: { stroke: "#1f2a40", width: 1 }, font: "11px system-ui, sans-serif" };

  function chartSize(el) {
    return { width: Math.max(el.clientWidth, 200), height: Math.max(el.clientHeight, 120) };
  }

  /* One chart made once, with a fixed number of series slots: a new discovery takes a slot by
     changing the slot's colour and data, so the chart is never rebuilt while playing. */
  const spread = {
    u: null, colors: [], widths: [],

    setup() {
      const el = $("#spread");
      new ResizeObserver(() => { if (this.u) this.u.setSize(chartSize(el)); }).observe(el);
    },

    render() {
      const model = app.model;
      const el = $("#spread");
      let ids = model.discoveryOrder.slice(-SPREAD_SERIES);
      if (app.pinned && !ids.includes(app.pinned) && model.discoveries.has(app.pinned)) ids = [app.pinned].concat(ids.slice(1));
      const list = ids.map((id) => model.discoveries.get(id));
      this.legend(list);
      if (!list.length) {
        if (this.u) this.u.setData(this.empty());
        el.dataset.empty = "no discoveries yet";
        return;
      }
      delete el.dataset.empty;
      const focus = graph.focusId();
      this.colors = [null].concat(list.map((d) => (d.id === focus ? d.color : d.color + "70")));
      this.widths = [0].concat(list.map((d) => (d.id === focus ? 3 : 1.5)));
      const data = this.data(list);
      if (!this.u) this.u = new uPlot(this.options(el), data, el);
      else this.u.setData(data);
    },

    empty() {
      return [[0]].concat(new Array(SPREAD_SERIES).fill([null]));
    },

    data(list) {
      const model = app.model;
      let span = 0;
      for (const d of list) if (d.curve.length) span = Math.max(span, d.curve[d.curve.length - 1][0]);
      span = Math.max(span * 1.05, 0.001);
      const ends = list.map((d) => Math.min(span, Math.max(0, model.t - d.t)));
      const xs = new Set([0]);
      list.forEach((d, i) => { for (const [dt] of d.curve) if (dt <= span) xs.add(dt); xs.add(ends[i]); });
      const x = [...xs].sort((a, b) => a - b);
      const series = [];
      for (let i = 0; i < SPREAD_SERIES; i++) {
        const d = list[i];
        const out = new Array(x.length).fill(null);
        if (d) {
          let k = 0, y = null;
          for (let j = 0; j < x.length; j++) {
            while (k < d.curve.length && d.curve[k][0] <= x[j]) { y = 100 * d.curve[k][1]; k++; }
            out[j] = x[j] <= ends[i] + 1e-9 ? y : null;
          }
        }
        series.push(out);
      }
      return [x, ...series];
    },

    options(el) {
      const slots = [];
      for (let i = 1; i <= SPREAD_SERIES; i++) {
        slots.push({ label: `discovery ${i}`, stroke: (u, si) => this.colors[si] || "rgba(0,0,0,0)",
          width: 2, paths: steppedWidth(() => this.widths, i), points: { show: false } });
      }
      return Object.assign(chartSize(el), {
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        scales: { x: { time: false }, y: { range: [0, 104] } },
        axes: [
          Object.assign({}, AXIS, { values: (u, vals, axis, space, incr) => vals.map((v) => (v === 0 ? "0" : "+" + fmtSpan(v, incr))), label: AXIS_LABEL[clockKind()], labelSize: 18, labelFont: "11px system-ui, sans-serif" }),
          Object.assign({}, AXIS, { values: (u, vals) => vals.map((v) => v + "%"), size: 46, splits: () => [0, 25, 50, 75, 100] }),
        ],
        series: [{}].concat(slots),
        hooks: { draw: [(u) => {
          const ctx = u.ctx;
          const y = u.valToPos(50, "y", true);
          ctx.save();
          ctx.strokeStyle = "#5b6b88";
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
          ctx.restore();
        }] },
      });
    },

    legend(list) {
      const html = list.slice().reverse().map((d) =>
        `<button class="chip${app.pinned === d.id ? " pinned" : ""}" data-focus="${esc(d.id)}"><i class="swatch" style="background:${d.color}"></i>${esc(shortId(d.id))} <span class="muted">${esc(shortName(d.peer))}</span></button>`).join("");
      const el = $("#spread-legend");
      if (el.dataset.html !== html) { el.innerHTML = html || '<span class="muted">each curve will be one discovery; the dashed line marks 50 %</span>'; el.dataset.html = html; }
    },
  };

  /* One strip per tier (tiers train different models, so their val_bpb are not comparable),
     all on the same time axis: the best so far as a step line, a dot at each kept step. */
  const trajectory = {
    strips: new Map(), key: "",

    setup() {
      new ResizeObserver(() => this.resize()).observe($("#trajectory"));
    },

    stripSize(count) {
      const el = $("#trajectory");
      const height = Math.max(el.clientHeight, 150);
      return { width: Math.max(el.clientWidth, 200), height: Math.max(Math.floor(height / Math.max(count, 1)), 70) };
    },

    resize() {
      const n = this.strips.size;
      let i = 0;
      for (const strip of this.strips.values()) {
        i += 1;
        const size = this.stripSize(n);
        if (i === n) size.height = Math.max($("#trajectory").clientHeight - (n - 1) * size.height, 70);
        strip.u.setSize(size);
      }
    },

    render() {
      const model = app.model;
      const el = $("#trajectory");
      const tiers = model.tierOrder.filter((t) => model.trajectory.has(t));
      this.legend(tiers);
      if (!tiers.length) {
        el.dataset.empty = "no measured states yet";
        return;
      }
      delete el.dataset.empty;
      const key = tiers.join(",");
      if (key !== this.key) {
        for (const strip of this.strips.values()) strip.u.destroy();
        this.strips.clear();
        el.innerHTML = "";
        tiers.forEach((tier, i) => {
          const div = document.createElement("div");
          div.className = "strip";
          div.dataset.tier = tier;
          el.appendChild(div);
          this.strips.set(tier, { div, u: new uPlot(this.options(tier, i === tiers.length - 1, tiers.length),
            this.data(tier), div) });
        });
        this.key = key;
        this.resize();
      } else {
        for (const tier of tiers) this.strips.get(tier).u.setData(this.data(tier));
      }
    },

    data(tier) {
      const steps = app.model.trajectory.get(tier);
      const now = Math.max(app.model.t, steps[steps.length - 1][0]);
      return [steps.map((s) => s[0]).concat([now]), steps.map((s) => s[1]).concat([steps[steps.length - 1][1]])];
    },

    options(tier, bottom, count) {
      const color = colorOf(tier);
      return Object.assign(this.stripSize(count), {
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        padding: [6, 10, bottom ? 0 : 2, 0],
        scales: {
          x: { time: false, range: () => [0, Math.max(app.model.t, 1)] },
          y: { range: (u, min, max) => { const pad = Math.max((max - min) * 0.2, 0.003); return [min - pad, max + pad]; } },
        },
        axes: [
          Object.assign({}, AXIS, { show: true, incrs: TIME_INCRS, size: bottom ? 30 : 4,
            values: (u, vals) => (bottom ? vals.map(fmtAxisTime) : vals.map(() => "")) }),
          Object.assign({}, AXIS, { size: 56, ticks: { show: false }, splits: (u, i, min, max) => [min + (max - min) * 0.2, max - (max - min) * 0.2],
            values: (u, vals) => vals.map((v) => v.toFixed(3)) }),
        ],
        series: [{}, {
          label: tier, stroke: color, width: 2, fill: color + "14",
          paths: uPlot.paths.stepped({ align: 1 }),
          points: { show: true, size: 6, fill: color, stroke: color,
            filter: (u, seriesIdx) => u.data[seriesIdx].map((_, i) => i).slice(0, -1) } }],
        hooks: { draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.fillStyle = color;
          ctx.font = `600 ${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
          ctx.textAlign = "right";
          ctx.fillText(tier, u.bbox.left + u.bbox.width - 4 * devicePixelRatio, u.bbox.top + 13 * devicePixelRatio);
          ctx.restore();
        }] },
      });
    },

    legend(tiers) {
      const model = app.model;
      const html = tiers.map((t) => `<span class="tier"><i style="background:${colorOf(t)}"></i>${esc(t)} <b>${fmtVal(model.best.get(t).val)}</b>
        <span class="muted">${model.trajectory.get(t).length - 1} improvements</span></span>`).join("");
      const el = $("#trajectory-legend");
      if (el.dataset.html !== html) { el.innerHTML = html || '<span class="muted">each tier\'s best val_bpb; dots are kept steps</span>'; el.dataset.html = html; }
    },
  };

  // --- tables ------------------------------------------------------------------------------

  function renderDiscoveries() {
    const model = app.model;
    const focus = graph.focusId();
    const ids = model.discoveryOrder.slice(-TABLE_ROWS).reverse();
    const rows = ids.map((id) => {
      const d = model.discoveries.get(id);
      const s = model.share(d);
      const pct = Math.round(100 * s.share);
      const real = realDelivery(d);
      const cls = [id === focus ? "focused" : "", id === app.pinned ? "pinned" : ""].join(" ");
      return `<tr class="${cls}" data-discovery="${esc(id)}" data-reached="${s.reached}" data-alive="${s.alive}" data-adopted="${d.adopted.size}">
        <td><i class="swatch" style="background:${d.color}"></i><code>${esc(shortId(id))}</code></td>
        <td>${d.peer ? peerTag(d.peer) : "?"}</td>
        <td class="num">${fmtVal(d.val)}</td>
        <td class="reach"><span class="bar"><span style="width:${pct}%"></span></span><span class="reached">${s.reached}/${s.alive}</span></td>
        <td class="num">${fmtDur(d.t50)}${realCell(real, "t50")}</td><td class="num">${fmtDur(d.t100)}${realCell(real, "t100")}</td>
        <td class="num">${d.adopted.size}</td><td class="num muted">${fmtClock(d.t)}</td></tr>
        <tr class="credit-row" data-focus="${esc(id)}" data-credit-of="${esc(id)}"><td></td><td colspan="7" class="credit">${creditHtml(d, " · ")}</td></tr>`;
    }).join("");
    const body = $("#discoveries tbody");
    const html = rows || '<tr class="empty"><td colspan="8">no discoveries yet</td></tr>';
    if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
    setText($("#discoveries-count"), model.discoveryOrder.length > TABLE_ROWS ? `newest ${TABLE_ROWS} of ${model.discoveryOrder.length}` : "");
  }

  /** Under the spread chart: the followed discovery's real delivery, which its curve cannot show. */
  function renderSpreadReal() {
    const id = graph.focusId();
    const d = id ? app.model.discoveries.get(id) : null;
    const real = d ? realHtml(d) : "";
    const html = real ? `<i class="swatch" style="background:${d.color}"></i><code>${esc(shortId(d.id))}</code> ${real}` :
      clockKind() === "virtual" ? `<span class="muted">${esc(REAL_LABEL)}: none recorded (no gossip receipt with a wall time yet)</span>` : "";
    const el = $("#spread-real");
    if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
  }

  function realCell(real, key) {
    return real ? `<small class="real" title="${esc(REAL_LABEL)}">${fmtDur(finite(real[key]) ? real[key] / 1000 : null)} real</small>` : "";
  }

  function renderLeaderboard() {
    const model = app.model;
    const tiers = model.tierOrder.filter((t) => model.best.has(t));
    const rows = tiers.map((tier) => {
      const b = model.best.get(tier);
      const { chain, missingParent } = model.lineage(tier);
      const shown = chain.slice(-7);
      const chips = shown.map((s, i) => {
        const prev = i > 0 ? shown[i - 1] : null;
        const delta = prev && finite(prev.val) && finite(s.val) ? fmtDelta(s.val - prev.val) : "";
        const label = s.baseline ? "baseline" : shortId(s.state);
        return `<button class="chip step${s.diff ? " has-diff" : ""}" data-state="${esc(s.state)}" title="${esc(s.description || "")}">${esc(label)}${delta ? ` <span class="delta">${delta}</span>` : ""}</button>`;
      });
      const hidden = chain.length - shown.length;
      const head = hidden > 0 ? `<span class="muted">${hidden} earlier →</span>` : missingParent ? `<span class="muted">…</span>` : "";
      return `<tr data-tier="${esc(tier)}">
        <td><span class="tier"><i style="background:${colorOf(tier)}"></i>${esc(tier)}</span></td>
        <td class="num best">${fmtVal(b.val)}</td><td class="num">${fmtVal(b.test)}</td>
        <td>${b.peer ? peerTag(b.peer) : "?"}</td>
        <td class="lineage">${head}${chips.join('<span class="arrow">→</span>')}</td></tr>`;
    }).join("");
    const body = $("#leaderboard tbody");
    const html = rows || '<tr class="empty"><td colspan="5">no measured states yet</td></tr>';
    if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
  }

  function renderFeed() {
    const feed = app.model.feed;
    const rows = [];
    for (let i = feed.length - 1; i >= 0 && rows.length < FEED_ROWS; i--) {
      const f = feed[i];
      rows.push(`<tr class="status-${esc(f.status)}"><td class="muted num">${fmtClock(f.t)}</td><td>${peerTag(f.peer)}</td>
        <td class="desc" title="${esc(f.description)}">${esc(f.description)}</td><td class="num">${fmtVal(f.val)}</td>
        <td><span class="status ${esc(f.status)}">${esc(f.status)}</span></td></tr>`);
    }
    const html = rows.join("") || '<tr class="empty"><td colspan="5">no experiments yet</td></tr>';
    const body = $("#feed tbody");
    if (body.dataset.html !== html) { body.innerHTML = html; body.dataset.html = html; }
  }

  // --- diff dialog -------------------------------------------------------------------------

  function showState(state) {
    const s = app.model.states.get(state);
    if (!s) return;
    const d = s.via ? app.model.discoveries.get(s.via) : null;
    const diff = s.diff || (d && d.diff) || "";
    $("#diff-title").innerHTML = `${s.baseline ? "baseline" : "state"} <code>${esc(shortId(s.state))}</code> by ${peerTag(s.peer)}`;
    $("#diff-credit").innerHTML = d && !d.placeholder ? `<span class="muted">credit</span> ${creditHtml(d, " · ")}` : "";
    $("#diff-meta").textContent = `${s.description || ""} · val_bpb ${fmtVal(s.val)}${finite(s.test) ? " · test_bpb " + fmtVal(s.test) : ""} · parent ${s.parent ? shortId(s.parent) : "—"} · at ${fmtClock(s.t)}`;
    $("#diff-body").innerHTML = diff ? diff.split("\n").map((line) => {
      const cls = line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("+") ? "add" :
        line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "";
      return `<span class="${cls}">${esc(line)}</span>`;
    }).join("\n") : '<span class="muted">no diff recorded for this state (a baseline or a locally kept step)</span>';
    $("#diff-dialog").showModal();
  }

  function setupClicks() {
    document.addEventListener("click", (e) => {
      const focus = e.target.closest("[data-focus], tr[data-discovery]");
      if (focus) {
        const id = focus.dataset.focus || focus.dataset.discovery;
        app.pinned = app.pinned === id ? null : id;
        app.selectedPeer = null;
        graph.lastActivity = performance.now();
        app.dirty.tables = app.dirty.charts = true;
        return;
      }
      if (e.target.closest("[data-unpin]")) {
        app.pinned = null;
        app.dirty.tables = app.dirty.charts = true;
        return;
      }
      const step = e.target.closest("[data-state]");
      if (step) showState(step.dataset.state);
    });
    $("#diff-close").addEventListener("click", () => $("#diff-dialog").close());
  }

  // --- the frame loop ------------------------------------------------------------------------

  let lastFrame = 0;

  function frame(now) {
    const dt = lastFrame ? Math.min((now - lastFrame) / 1000, 0.25) : 0;
    if (lastFrame) {
      const gap = now - lastFrame;
      stats.maxFrameGapMs = Math.max(stats.maxFrameGapMs, gap);
      if (app.playing && stats.playEnd === null) {
        stats.maxFrameGapDuringPlayMs = Math.max(stats.maxFrameGapDuringPlayMs, gap);
        stats.playFrames += 1;
      }
    }
    lastFrame = now;
    const t0 = performance.now();
    advance(dt);
    const t1 = performance.now();
    render(now);
    const t2 = performance.now();
    stats.frames += 1;
    stats.applyMs += t1 - t0;
    stats.renderMs += t2 - t1;
    stats.maxFrameMs = Math.max(stats.maxFrameMs, t2 - t0);
    stats.eventsApplied = app.cursor;
    requestAnimationFrame(frame);
  }

  function render(now) {
    const changes = app.model.takeChanges();
    const dirty = app.dirty;
    const graphStart = performance.now();
    timed("graph", () => {
      if (changes.full) {
        graph.rebuild();
        dirty.tables = dirty.charts = true;
      } else {
        graph.update(changes);
      }
      graph.highlight(now, changes.touches);
      graph.tick(now);
    });
    app.jumped = false;
    if (changes.discoveries || changes.leaderboard || changes.feed || changes.peers.size || changes.touches.length) dirty.tables = true;
    if (changes.spread || changes.trajectory) dirty.charts = true;
    if (now - app.lastHeader > HEADER_EVERY_MS) {
      renderCounters();
      renderPlayer();
      app.lastHeader = now;
    }
    let drewTables = performance.now() - graphStart > 25; // a heavy graph frame: tables and charts wait a frame
    if (dirty.tables && !drewTables && now - app.lastTables > TABLES_EVERY_MS) {
      drewTables = true;
      timed("tables", () => {
        renderLegend();
        renderFocus();
        renderDiscoveries();
        renderSpreadReal();
        renderLeaderboard();
        renderFeed();
      });
      dirty.tables = false;
      app.lastTables = now;
    }
    if (dirty.charts && !drewTables && now - app.lastCharts > CHARTS_EVERY_MS) {
      timed("charts", () => {
        spread.render();
        trajectory.render();
      });
      dirty.charts = false;
      app.lastCharts = now;
    }
  }

  async function start() {
    try {
      await load();
    } catch (err) {
      $("#connection").textContent = "could not load events: " + err;
      throw err;
    }
    stats.mode = app.mode;
    setupHeader();
    graph.setup();
    spread.setup();
    trajectory.setup();
    setupClicks();
    setupPlayer();
    // for tests and the curious: drive the player from the console
    window.swarmPlayer = { seek, play, setSpeed: (speed) => { app.speed = speed; $("#speed").value = String(speed); },
      state: () => ({ mode: app.mode, vt: app.vt, lastT: app.lastT, playing: app.playing, speed: app.speed,
        applied: app.cursor, loaded: app.events.length }) };
    stats.ready = true;
    requestAnimationFrame(frame);
  }

  start();
})();
