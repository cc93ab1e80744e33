/* The dashboard page's start (see app-base.js for its parts): the header, the clicks, and the
 * frame loop that applies events and redraws what changed.
 */
"use strict";

(function (A) {
  const { $, app, stats, timed, clockKind, CLOCK_NOTE, fmtClock, setText, load, advance, play, seek, setupPlayer,
    renderPlayer, graph, renderLegend, renderFocus, spread, trajectory, renderDiscoveries, renderSpreadReal,
    renderLeaderboard, renderFeed, showState } = A;
  const HEADER_EVERY_MS = 90;    // counters, clock and scrubber
  const TABLES_EVERY_MS = 300;
  const CHARTS_EVERY_MS = 500;

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

  // --- clicks ------------------------------------------------------------------------------

  /** Clicks anywhere: a discovery (row, chip) pins it in the graph; a lineage step opens its diff. */
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
})(window.SwarmApp);
