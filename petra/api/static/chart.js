// A small canvas line chart for trends (no library): time on x, value on y, samples
// that were not GOOD marked in red, NaN/BAD gaps left open. Drag across it to zoom;
// the owner decides what a zoom means (it refetches from the history store).
export class Chart {
  constructor(canvas, onZoom) {
    this.c = canvas;
    this.onZoom = onZoom;
    this.points = [];      // [t_ms, value|null, quality]
    this.x0 = 0; this.x1 = 1;
    this.drag = null;
    canvas.addEventListener("pointerdown", (e) => { this.drag = { a: e.offsetX, b: e.offsetX }; canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointermove", (e) => { if (this.drag) { this.drag.b = e.offsetX; this.draw(); } });
    canvas.addEventListener("pointerup", () => {
      const d = this.drag; this.drag = null;
      if (d && Math.abs(d.b - d.a) > 8) {
        const t = (x) => this.x0 + (x - this.pad.l) / this.w * (this.x1 - this.x0);
        this.onZoom(t(Math.min(d.a, d.b)), t(Math.max(d.a, d.b)));
      }
      this.draw();
    });
  }

  set(points, x0, x1, holdTo = 0) { this.points = points; this.x0 = x0; this.x1 = x1; this.holdTo = holdTo; this.draw(); }

  draw() {
    const c = this.c, dpr = window.devicePixelRatio || 1;
    const W = c.clientWidth, H = c.clientHeight;
    if (c.width !== Math.round(W * dpr) || c.height !== Math.round(H * dpr)) {
      c.width = Math.round(W * dpr); c.height = Math.round(H * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    this.pad = { l: 64, r: 12, t: 10, b: 28 };
    const p = this.pad;
    this.w = Math.max(10, W - p.l - p.r);
    const h = Math.max(10, H - p.t - p.b);
    const vis = this.points.filter((q) => q[0] >= this.x0 && q[0] <= this.x1);
    const vals = vis.map((q) => q[1]).filter((v) => v !== null && Number.isFinite(v));
    let lo = vals.length ? Math.min(...vals) : 0, hi = vals.length ? Math.max(...vals) : 1;
    if (hi === lo) { hi += 1; lo -= 1; }
    const span = hi - lo; hi += span * 0.05; lo -= span * 0.05;
    const X = (t) => p.l + (t - this.x0) / (this.x1 - this.x0) * this.w;
    const Y = (v) => p.t + (hi - v) / (hi - lo) * h;
    g.font = "12px system-ui, sans-serif"; g.fillStyle = "#1a1a1a"; g.strokeStyle = "#b3b3b3"; g.lineWidth = 1;
    g.strokeRect(p.l, p.t, this.w, h);
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4, y = Y(v);
      g.beginPath(); g.moveTo(p.l, y); g.lineTo(p.l + this.w, y); g.stroke();
      g.fillText(+v.toPrecision(4) + "", 4, y + 4);
    }
    const ms = this.x1 - this.x0;
    for (let i = 0; i <= 4; i++) {
      const t = this.x0 + ms * i / 4, d = new Date(t);
      const label = ms > 2 * 86400e3 ? d.toLocaleDateString() + " " + d.toLocaleTimeString(undefined, { hour12: false, hour: "2-digit", minute: "2-digit" })
        : d.toLocaleTimeString(undefined, { hour12: false });
      g.fillText(label, Math.min(X(t) - 24, W - 70), H - 8);
    }
    g.strokeStyle = "#0b4f9c"; g.lineWidth = 2; g.beginPath();
    // Steps, not slopes: a recorded value holds until the next sample says otherwise.
    let pen = false, lastY = 0;
    for (const [t, v] of vis) {
      if (v === null || !Number.isFinite(v)) { pen = false; continue; }
      if (pen) { g.lineTo(X(t), lastY); g.lineTo(X(t), Y(v)); } else g.moveTo(X(t), Y(v));
      pen = true; lastY = Y(v);
    }
    // Held to the right edge only while the feed is live (the owner says so).
    if (pen && this.holdTo) g.lineTo(X(Math.min(this.holdTo, this.x1)), lastY);
    g.stroke();
    g.fillStyle = "#c00000";
    for (const [t, v, q] of vis) {
      if (q !== "GOOD") {
        const y = v === null || !Number.isFinite(v) ? p.t + h - 4 : Y(v);
        g.fillRect(X(t) - 3, y - 3, 6, 6);
      }
    }
    if (!vis.length) { g.fillStyle = "#4d4d4d"; g.fillText("no samples in this window", p.l + 10, p.t + 20); }
    if (this.drag) {
      g.fillStyle = "rgba(11, 79, 156, 0.2)";
      g.fillRect(Math.min(this.drag.a, this.drag.b), p.t, Math.abs(this.drag.b - this.drag.a), h);
    }
  }
}
