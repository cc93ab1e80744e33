/* The page's events (see app-base.js for its parts): from the server, the first ones by
 * /api/events, then each as it comes by server-sent events (/api/stream); or, in an exported
 * snapshot, from the page itself (<script id="swarm-data">).
 */
"use strict";

(function (A) {
  const { $, app, stats } = A;

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

  Object.assign(A, { load });
})(window.SwarmApp);
