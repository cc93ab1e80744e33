/* The tables (see app-base.js for the page's parts): the discoveries with their reach and credit,
 * the leaderboard by tier with its lineage, the experiment feed; and the diff dialog behind a
 * lineage step.
 */
"use strict";

(function (A) {
  const { shortId, finite } = window.SwarmModel;
  const { $, app, clockKind, REAL_LABEL, realDelivery, realHtml, esc, fmtClock, fmtDur, fmtVal, fmtDelta, colorOf,
    peerTag, creditHtml, setText, graph } = A;
  const TABLE_ROWS = 40;
  const FEED_ROWS = 40;

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

  Object.assign(A, { renderDiscoveries, renderFeed, renderLeaderboard, renderSpreadReal, showState });
})(window.SwarmApp);
