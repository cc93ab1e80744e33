/* The peer graph (see app-base.js for the page's parts): peers on a circle by tier, their gossip
 * links, the focused discovery's wave as it spreads; the legend and the focus panel under it.
 */
"use strict";

(function (A) {
  const { shortId, linkKey, finite } = window.SwarmModel;
  const { $, app, replayLike, clockKind, realHtml, esc, fmtClock, fmtDur, fmtVal, fmtDelta, colorOf, peerTag,
    creditHtml } = A;
  const FIT_EVERY_MS = 600;
  const FLASH_MS = 650;
  const FADE_AFTER_MS = 9000;    // a discovery's highlight fades once it stops spreading
  const COLORS = { author: "#ffd23f", received: "#ff8c42", adopted: "#3ddc97", reject: "#ef4444" };

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

  // --- under the graph ------------------------------------------------------------------------

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

  Object.assign(A, { graph, renderFocus, renderLegend });
})(window.SwarmApp);
