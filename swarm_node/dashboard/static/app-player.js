/* Playing the events into the model (see app-base.js for the page's parts): live and home modes
 * apply them as they arrive; replay and snapshot modes play them by their virtual time `t`, with
 * the player's controls (play, speed, scrubber; ?speed=, ?at=, ?play=0 in the URL).
 */
"use strict";

(function (A) {
  const { $, app, fmtClock, replayLike, setText, stats } = A;
  const params = new URLSearchParams(location.search);
  const APPLY_BUDGET_MS = 8;     // per frame, for applying events
  const SPEEDS = [1, 10, 30, 100, 300, 1000, "max"];

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

  // --- the replay controls -----------------------------------------------------------------

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

  Object.assign(A, { advance, play, renderPlayer, seek, setupPlayer });
})(window.SwarmApp);
