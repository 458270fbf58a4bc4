// Plots drawn by hand (no charting library, so nothing to fetch): training curves as SVG, and the
// latent map as a canvas scatter that turns a click into map coordinates.
import { el, yaml } from "./lib.js";

export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f"];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A tick value with enough decimals to tell ticks `span` apart (101.0, 101.5, 102.0; not 101, 102, 102). */
function fmt(v, span) {
  return v.toFixed(Math.max(0, Math.min(4, 1 - Math.floor(Math.log10(span)))));
}

const CHART_HEIGHT = 170;
const CHART_FONT = 12; // px: the chart is drawn at its rendered width, so this is the size on screen

/**
 * A line chart of metric rows against `epoch`. `series` is [[key, label, colour], ...]; keys absent
 * from the rows are skipped. Returns an <svg>, or null when there is nothing to plot.
 *
 * The chart is drawn in CSS pixels at whatever width its card gives it (and redrawn when that
 * changes) instead of being scaled from a fixed viewBox, so its text stays CHART_FONT px on screen.
 */
export function lineChart(rows, series, title) {
  const shown = series.filter(([key]) => rows.some((r) => typeof r[key] === "number"));
  if (!rows.length || !shown.length) return null;
  return responsiveChart((width) => chartParts(rows, shown, title, width));
}

/** An <svg class="chart"> drawn by `parts(width)` at its rendered width, redrawn when that changes. */
function responsiveChart(parts) {
  const root = svg("svg", { class: "chart", height: CHART_HEIGHT, "font-size": CHART_FONT });
  let drawnWidth = 0;
  const draw = (width) => {
    drawnWidth = width;
    root.setAttribute("viewBox", `0 0 ${width} ${CHART_HEIGHT}`);
    root.replaceChildren(...parts(width));
  };
  draw(420);
  new ResizeObserver(([entry]) => {
    const width = Math.round(entry.contentRect.width);
    if (width > 0 && width !== drawnWidth) draw(width);
  }).observe(root);
  return root;
}

function chartParts(rows, shown, title, W) {
  const H = CHART_HEIGHT, L = 48, R = 10, T = 22, B = 26;
  const xs = rows.map((r, i) => r.epoch ?? i + 1);
  const values = shown.flatMap(([key]) => rows.map((r) => r[key]).filter((v) => typeof v === "number"));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const parts = [svg("text", { x: L, y: 13, "font-weight": 600 }, title)];
  for (const f of [0, 0.5, 1]) {
    const y = lo + f * (hi - lo);
    parts.push(svg("line", { class: "axis", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
    parts.push(svg("text", { x: L - 5, y: sy(y) + 4, "text-anchor": "end" }, fmt(y, hi - lo)));
  }
  parts.push(svg("text", { x: L, y: H - 7 }, `epoch ${x0}`));
  parts.push(svg("text", { x: W - R, y: H - 7, "text-anchor": "end" }, `${x1}`));
  let lx = W - R;
  for (const [key, label, colour] of [...shown].reverse()) {
    const pts = rows.map((r, i) => (typeof r[key] === "number" ? `${sx(xs[i])},${sy(r[key])}` : null)).filter(Boolean);
    parts.push(svg("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    const t = svg("text", { x: lx, y: 13, "text-anchor": "end", fill: colour }, label);
    t.style.fill = colour;
    parts.push(t);
    lx -= label.length * 0.6 * CHART_FONT + 14;
  }
  return parts;
}

/** A model's training card: facts, the −ELBO and KL curves, and the config that rebuilds it. */
export function trainingPanel(info) {
  const rows = info.metrics;
  const last = rows[rows.length - 1] || {};
  const elbo = lineChart(rows, [["train_loss", "train", "#4f46e5"], ["val_neg_elbo", "validation", "#f97316"]], "−ELBO (nats per image)");
  const kl = lineChart(rows, [["train_kl", "train KL", "#0ea5e9"], ["val_kl", "val KL", "#e15759"]], "KL (nats)");
  const facts = [
    info.dataset && `dataset ${info.dataset}`,
    info.epoch != null && `epoch ${info.epoch}`,
    typeof last.val_neg_elbo === "number" && `val −ELBO ${last.val_neg_elbo.toFixed(2)}`,
  ].filter(Boolean).join(" · ");
  return [
    el("p", { class: "note" }, facts || "no training record"),
    elbo || el("p", { class: "note" }, "No metrics.jsonl beside this model."),
    kl,
    el("details", {}, el("summary", {}, "Config"), el("pre", {}, yaml(info.config))),
  ];
}

/** The latent map: points coloured by label; `onPick(x, y)` gets map coordinates of a click. */
export class MapView {
  constructor(canvas, map, onPick) {
    this.canvas = canvas;
    this.map = map;
    this.marks = {};
    const pad = 0.06;
    const ext = (v) => {
      const lo = Math.min(...v), hi = Math.max(...v), d = (hi - lo) || 1;
      return [lo - pad * d, hi + pad * d];
    };
    [this.x0, this.x1] = ext(map.x);
    [this.y0, this.y1] = ext(map.y);
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      const x = this.x0 + ((e.clientX - r.left) / r.width) * (this.x1 - this.x0);
      const y = this.y1 - ((e.clientY - r.top) / r.height) * (this.y1 - this.y0);
      this.pick(x, y);
    });
    this.onPick = onPick;
    this.draw();
  }

  /** Mark map point (x, y) and decode it. */
  pick(x, y) {
    this.marks.pick = [x, y];
    this.draw();
    this.onPick(x, y);
  }

  /** Map coordinates of a latent vector z: its projection on the two components. */
  project(z) {
    const { mean, components } = this.map;
    return components.map((c) => c.reduce((s, cj, j) => s + cj * (z[j] - mean[j]), 0));
  }

  /** The latent vector at map coordinates (x, y) (on the plane of the two components). */
  latent(x, y) {
    const { mean, components } = this.map;
    return mean.map((m, j) => m + x * components[0][j] + y * components[1][j]);
  }

  draw() {
    const c = this.canvas.getContext("2d");
    const { width: W, height: H } = this.canvas;
    const px = (x) => ((x - this.x0) / (this.x1 - this.x0)) * W;
    const py = (y) => (1 - (y - this.y0) / (this.y1 - this.y0)) * H;
    c.clearRect(0, 0, W, H);
    c.globalAlpha = 0.7;
    const { x, y, labels } = this.map;
    for (let i = 0; i < x.length; i++) {
      c.fillStyle = labels ? PALETTE[labels[i] % PALETTE.length] : "#4e79a7";
      c.beginPath();
      c.arc(px(x[i]), py(y[i]), 2.6, 0, 2 * Math.PI);
      c.fill();
    }
    c.globalAlpha = 1;
    if (this.marks.drawing) star(c, px(this.marks.drawing[0]), py(this.marks.drawing[1]));
    if (this.marks.pick) {
      const [mx, my] = [px(this.marks.pick[0]), py(this.marks.pick[1])];
      c.strokeStyle = "#111";
      c.lineWidth = 2;
      c.beginPath();
      c.arc(mx, my, 7, 0, 2 * Math.PI);
      c.moveTo(mx - 11, my); c.lineTo(mx + 11, my);
      c.moveTo(mx, my - 11); c.lineTo(mx, my + 11);
      c.stroke();
    }
  }
}

function star(c, x, y) {
  c.beginPath();
  for (let i = 0; i < 10; i++) {
    const r = i % 2 ? 5 : 12;
    const a = (Math.PI / 5) * i - Math.PI / 2;
    c.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
  }
  c.closePath();
  c.fillStyle = "#ffd400";
  c.strokeStyle = "#111";
  c.lineWidth = 1.5;
  c.fill();
  c.stroke();
}

/**
 * The score panel's histogram: the reference's bins (unequal widths, drawn equally wide, so a far tail
 * still fits), a line at the calibrated threshold, and a marker at `value` (placed inside its bin, or
 * at an end with an arrow when it lies beyond the reference). Returns an <svg class="chart">.
 */
export function scoreChart(res, value) {
  return responsiveChart((width) => scoreParts(res, value, width));
}

/** Where `v` falls on the chart's bin axis: bin index plus the fraction of the way through it. */
function binPosition(edges, v) {
  const n = edges.length - 1;
  if (v <= edges[0]) return 0;
  if (v >= edges[n]) return n;
  let i = 0;
  while (edges[i + 1] < v) i++;
  return i + (v - edges[i]) / (edges[i + 1] - edges[i] || 1);
}

function scoreParts(res, value, W) {
  const H = CHART_HEIGHT, L = 10, R = 10, T = 22, B = 26;
  const { edges, counts, source, n } = res.reference;
  const bins = counts.length;
  const top = Math.max(...counts, 1);
  const bw = (W - L - R) / bins;
  const sx = (pos) => L + pos * bw;
  const parts = [svg("text", { x: L, y: 13, "font-weight": 600 }, `${res.score}: ${source} (n=${n})`)];
  counts.forEach((c, i) => {
    const h = (c / top) * (H - T - B);
    parts.push(svg("rect", { x: sx(i) + 0.5, y: H - B - h, width: Math.max(bw - 1, 1), height: h, fill: "#9fb3d9" }));
  });
  parts.push(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const short = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : v.toFixed(1));
  parts.push(svg("text", { x: L, y: H - 7 }, short(edges[0])));
  parts.push(svg("text", { x: W - R, y: H - 7, "text-anchor": "end" }, short(edges[bins])));
  if (res.threshold != null) {
    const x = sx(binPosition(edges, res.threshold));
    parts.push(svg("line", { x1: x, x2: x, y1: T, y2: H - B, stroke: "#111", "stroke-dasharray": "4 3" }));
  }
  if (value != null) {
    const beyond = value > edges[bins] ? " →" : value < edges[0] ? "← " : "";
    const x = sx(binPosition(edges, value));
    parts.push(svg("line", { x1: x, x2: x, y1: T, y2: H - B, stroke: "#e15759", "stroke-width": 3 }));
    const label = beyond === "← " ? `← ${short(value)}` : `${short(value)}${beyond}`;
    const anchor = x > W / 2 ? "end" : "start";
    const t = svg("text", { x: x + (anchor === "end" ? -5 : 5), y: T + 12, "text-anchor": anchor }, label);
    t.style.fill = "#e15759";
    parts.push(t);
  }
  return parts;
}
