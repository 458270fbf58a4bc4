// The drawing pad: white ink on black, turned into a 28x28 image the way MNIST digits were made
// (the ink's bounding box scaled to fit 20x20, then centred by its centre of mass in 28x28).

export class Pad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.onChange = onChange;
    this.drawing = false;
    this.last = null;
    this.hasInk = false;
    this.clear();
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const type of ["pointerup", "pointerleave", "pointercancel"]) {
      canvas.addEventListener(type, () => this.up());
    }
  }

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.hasInk = false;
  }

  point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * (this.canvas.width / r.width), (e.clientY - r.top) * (this.canvas.height / r.height)];
  }

  down(e) {
    this.drawing = true;
    this.last = this.point(e);
    this.canvas.setPointerCapture?.(e.pointerId);
    this.stroke(this.last);
  }

  move(e) {
    if (!this.drawing) return;
    this.stroke(this.point(e));
    this.onChange(this.image());
  }

  up() {
    if (!this.drawing) return;
    this.drawing = false;
    this.onChange(this.image());
  }

  stroke(to) {
    const c = this.ctx;
    c.strokeStyle = "#fff";
    c.lineWidth = this.canvas.width / 13;
    c.lineCap = "round";
    c.lineJoin = "round";
    c.beginPath();
    c.moveTo(...this.last);
    c.lineTo(...to);
    c.stroke();
    this.last = to;
    this.hasInk = true;
  }

  /** Show an uploaded picture on the pad (fitted, centred) so the user sees what was sent. */
  show(img) {
    this.clear();
    const s = Math.min(this.canvas.width / img.width, this.canvas.height / img.height);
    const w = img.width * s;
    const h = img.height * s;
    this.ctx.drawImage(img, (this.canvas.width - w) / 2, (this.canvas.height - h) / 2, w, h);
  }

  /** The drawing as a 28x28 PNG data URL, MNIST-style; null while the pad is empty. */
  image() {
    const { width, height } = this.canvas;
    const px = this.ctx.getImageData(0, 0, width, height).data;
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (px[(y * width + x) * 4] > 20) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return null;
    const bw = x1 - x0 + 1;
    const bh = y1 - y0 + 1;
    const s = 20 / Math.max(bw, bh);
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    const sc = small.getContext("2d", { willReadFrequently: true });
    sc.fillStyle = "#000";
    sc.fillRect(0, 0, 28, 28);
    sc.imageSmoothingQuality = "high";
    sc.drawImage(this.canvas, x0, y0, bw, bh, 14 - (bw * s) / 2, 14 - (bh * s) / 2, bw * s, bh * s);
    // Shift so that the centre of mass sits at the centre (MNIST's last step).
    const d = sc.getImageData(0, 0, 28, 28).data;
    let m = 0, mx = 0, my = 0;
    for (let i = 0; i < 28 * 28; i++) {
      const v = d[i * 4];
      m += v;
      mx += v * (i % 28);
      my += v * Math.floor(i / 28);
    }
    const out = document.createElement("canvas");
    out.width = out.height = 28;
    const oc = out.getContext("2d");
    oc.fillStyle = "#000";
    oc.fillRect(0, 0, 28, 28);
    oc.drawImage(small, Math.round(13.5 - mx / m), Math.round(13.5 - my / m));
    return out.toDataURL("image/png");
  }
}
