// Plots drawn by hand (no charting library, so nothing to fetch): training curves as SVG, and the
// latent map as a canvas scatter that turns a click into map coordinates.

export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f"];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v) {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/**
 * A line chart of metric rows against `epoch`. `series` is [[key, label, colour], ...]; keys absent
 * from the rows are skipped. Returns an <svg>, or null when there is nothing to plot.
 */
export function lineChart(rows, series, title) {
  const shown = series.filter(([key]) => rows.some((r) => typeof r[key] === "number"));
  if (!rows.length || !shown.length) return null;
  const W = 420, H = 170, L = 44, R = 10, T = 18, B = 24;
  const xs = rows.map((r, i) => r.epoch ?? i + 1);
  const values = shown.flatMap(([key]) => rows.map((r) => r[key]).filter((v) => typeof v === "number"));
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}` });
  root.append(svg("text", { x: L, y: 11, "font-weight": 600 }, title));
  for (const f of [0, 0.5, 1]) {
    const y = lo + f * (hi - lo);
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
    root.append(svg("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end" }, fmt(y)));
  }
  root.append(svg("text", { x: L, y: H - 6 }, `epoch ${x0}`));
  root.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, `${x1}`));
  let lx = W - R;
  for (const [key, label, colour] of [...shown].reverse()) {
    const pts = rows.map((r, i) => (typeof r[key] === "number" ? `${sx(xs[i])},${sy(r[key])}` : null)).filter(Boolean);
    root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    const t = svg("text", { x: lx, y: 11, "text-anchor": "end", fill: colour }, label);
    t.style.fill = colour;
    root.append(t);
    lx -= label.length * 6 + 14;
  }
  return root;
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
