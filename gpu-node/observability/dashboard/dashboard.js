// The live latency page: polls dashboard/data.json (the node's own per-second history) every
// second and draws the figures and SVG charts by hand — no library, nothing from another origin.

const SVG_NS = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;
const LEVELS = ["p50", "p95", "p99"];

/** Milliseconds with about three significant digits. */
function fmtMs(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v < 1) return v.toFixed(3);
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return v.toFixed(0);
}

const FORMATS = {
  ms: fmtMs,
  rate: (v) => (Number.isFinite(v) ? v.toFixed(1) : "–"),
  size: (v) => (v === null || !Number.isFinite(v) ? "–" : v.toFixed(1)),
  count: (v) => (Number.isFinite(v) ? String(Math.round(v)) : "–"),
};

function pick(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

function duration(seconds) {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
}

function el(name, attrs = {}, parent) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

/** A rounded axis maximum (1, 2 or 5 × 10^n) at or above `v`. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const PAD = { left: 44, right: 14, top: 10, bottom: 20 };
/** Stage charts are small multiples: a viewBox close to their size on screen keeps text legible. */
const STAGE_VIEW = { w: 240, h: 170 };

/** Axes and grid for `t` from t0 to t1 (Unix seconds) and y from 0 to yMax; returns scales. */
function frame(svg, t0, t1, yMax, fmt) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = svg.viewBox.baseVal.width;
  const H = svg.viewBox.baseVal.height;
  const x = (t) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    el("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }, svg);
    el("text", { x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, svg).textContent =
      v === 0 ? "0" : fmt(v);
  }
  // A tick per minute back from now.
  for (let m = 0; t1 - 60 * m >= t0; m++) {
    const t = t1 - 60 * m;
    el("text", { x: x(t), y: H - 4, "text-anchor": m === 0 ? "end" : "middle" }, svg).textContent =
      m === 0 ? "now" : `-${m}m`;
  }
  return { x, y, w: W - PAD.left - PAD.right };
}

/** A polyline broken wherever the value is null (seconds with no calls). */
function path(points, x, y) {
  let d = "";
  let pen = false;
  for (const [t, v] of points) {
    if (v === null || v === undefined) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  }
  return d;
}

function stageChart(container, stage, series, t0, t1) {
  let fig = container.querySelector(`[data-stage="${stage}"]`);
  if (!fig) {
    fig = document.createElement("figure");
    fig.dataset.stage = stage;
    const cap = document.createElement("figcaption");
    cap.textContent = stage;
    fig.appendChild(cap);
    fig.appendChild(el("svg", { viewBox: `0 0 ${STAGE_VIEW.w} ${STAGE_VIEW.h}`, role: "img" }));
    container.appendChild(fig);
  }
  const svg = fig.querySelector("svg");
  let max = 0;
  for (const s of series) {
    const p = s.stages[stage];
    if (p) max = Math.max(max, p.p99);
  }
  const { x, y } = frame(svg, t0, t1, niceMax(max), fmtMs);
  for (const level of LEVELS) {
    const pts = series.map((s) => [s.t, s.stages[stage] ? s.stages[stage][level] : null]);
    el("path", { class: `line ${level}`, d: path(pts, x, y) }, svg);
  }
  svg.setAttribute("aria-label", `${stage} latency p50, p95 and p99 over time`);
}

function barChart(svg, series, t0, t1, value, bad) {
  let max = 0;
  for (const s of series) max = Math.max(max, value(s) + (bad ? bad(s) : 0));
  const f = frame(svg, t0, t1, niceMax(max), (v) => FORMATS.rate(v));
  const { x, y } = f;
  const w = Math.max(1, f.w / Math.max(1, t1 - t0) - 0.5);
  for (const s of series) {
    const v = value(s);
    if (v > 0) el("rect", { class: "bar", x: x(s.t), y: y(v), width: w, height: y(0) - y(v) }, svg);
    const b = bad ? bad(s) : 0;
    if (b > 0) {
      el("rect", { class: "bar bad", x: x(s.t), y: y(v + b), width: w, height: y(0) - y(b) }, svg);
    }
  }
}

function lineChart(svg, series, t0, t1, value) {
  let max = 0;
  for (const s of series) max = Math.max(max, value(s) ?? 0);
  const { x, y } = frame(svg, t0, t1, niceMax(max), (v) => FORMATS.size(v));
  el(
    "path",
    {
      class: "line mean",
      d: path(
        series.map((s) => [s.t, value(s)]),
        x,
        y,
      ),
    },
    svg,
  );
}

function render(data) {
  for (const node of document.querySelectorAll("[data-figure]")) {
    const v = pick(data, node.dataset.figure);
    node.textContent = (FORMATS[node.dataset.unit] ?? String)(v ?? null);
    node.dataset.value = v === null || v === undefined ? "" : String(v);
  }
  for (const node of document.querySelectorAll("[data-field]")) {
    node.textContent = String(pick(data, node.dataset.field) ?? "");
  }
  document.querySelector('[data-field="uptime"]').textContent = duration(data.node.uptimeSeconds);

  const tbody = document.querySelector("#stages tbody");
  tbody.replaceChildren();
  for (const stage of data.stages) {
    const s = data.summary.stages[stage];
    const tr = document.createElement("tr");
    tr.dataset.stage = stage;
    const cells = [stage, ...(s ? [s.p50, s.p95, s.p99, s.mean].map(fmtMs) : ["–", "–", "–", "–"])];
    cells.push(s ? String(s.count) : "0");
    cells.forEach((text, i) => {
      const td = document.createElement(i === 0 ? "th" : "td");
      td.textContent = text;
      if (i > 0 && i < 5 && s) td.dataset.value = String([s.p50, s.p95, s.p99, s.mean][i - 1]);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
  }

  const series = data.series;
  const t1 = series.length > 0 ? series[series.length - 1].t : Math.floor(Date.now() / 1000);
  const t0 = Math.min(t1 - 60, series.length > 0 ? series[0].t : t1 - 60);
  const charts = document.getElementById("stage-charts");
  for (const stage of data.stages) stageChart(charts, stage, series, t0, t1);
  barChart(
    document.getElementById("throughput-chart"),
    series,
    t0,
    t1,
    (s) => s.images,
    (s) => s.failedImages,
  );
  lineChart(document.getElementById("batch-chart"), series, t0, t1, (s) => s.meanBatchSize);

  document.getElementById("triton").hidden = data.triton === null;
  const when = new Date(data.generatedAt).toLocaleTimeString();
  document.getElementById("status").textContent = `live · updated ${when}`;
  document.body.dataset.state = "live";
  document.body.dataset.generatedAt = data.generatedAt;
}

async function poll() {
  try {
    const res = await fetch("dashboard/data.json", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (err) {
    document.body.dataset.state = "error";
    document.getElementById("status").textContent = `cannot reach the node (${err.message})`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
