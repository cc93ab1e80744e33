/* The charts (see app-base.js for the page's parts), drawn with uPlot: the spread of the newest
 * discoveries, and each tier's best val_bpb over time.
 */
"use strict";

(function (A) {
  const { shortName, shortId } = window.SwarmModel;
  const { $, app, AXIS_LABEL, clockKind, colorOf, esc, fmtSpan, fmtVal, graph, pad } = A;
  const SPREAD_SERIES = 8;       // discoveries drawn in the spread chart
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

  Object.assign(A, { spread, trajectory });
})(window.SwarmApp);
