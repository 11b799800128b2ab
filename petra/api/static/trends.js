// Trends: pick signals, read a window from the history store (downsampled by the
// server to the chart's width), zoom (drag, or the buttons), and a live tail from the
// page's WebSocket appended to the right edge while the window ends at "now".
import { Chart } from "./chart.js";
import { el, fmtValue, qualityText } from "./util.js";

export class TrendsPage {
  constructor(auth, feed) {
    this.auth = auth;
    this.feed = feed;
    this.series = new Map();   // name -> {chart, points, box, last}
    this.zoom = null;          // [t0_ms, t1_ms] when zoomed, else null (window to now)
    this.visible = false;
    const $ = (id) => document.getElementById(id);
    $("tr-form").addEventListener("submit", (e) => { e.preventDefault(); this.add($("tr-signal").value.trim()); });
    $("tr-window").addEventListener("change", () => { this.zoom = null; this.reloadAll(); });
    $("tr-live").addEventListener("change", () => this.redrawAll());
    $("tr-zoom-in").addEventListener("click", () => this.zoomBy(0.5));
    $("tr-zoom-out").addEventListener("click", () => this.zoomBy(2));
    $("tr-reset").addEventListener("click", () => { this.zoom = null; this.reloadAll(); });
    feed.listeners.add((names) => this.onChanges(names));
    setInterval(() => { if (this.visible && !this.zoom && $("tr-live").checked) this.redrawAll(); }, 1000);
  }

  show() { this.visible = true; this.redrawAll(); }
  hide() { this.visible = false; }

  range() {
    if (this.zoom) return this.zoom;
    const now = Date.now();
    return [now - Number(document.getElementById("tr-window").value) * 1000, now];
  }

  async add(name) {
    const msg = document.getElementById("tr-msg");
    msg.textContent = "";
    if (!name || this.series.has(name)) return;
    const canvas = el("canvas", { role: "img", "aria-label": "trend of " + name });
    const current = el("span", { class: "muted" });
    const remove = el("button", { type: "button", class: "secondary", "aria-label": "Remove " + name, onclick: () => {
      box.remove(); this.series.delete(name); } }, "Remove");
    const info = el("span", { class: "muted" });
    const box = el("div", { class: "chart", "data-trend": name }, el("h2", {}, name, current, info, remove), canvas);
    document.getElementById("tr-charts").append(box);
    const s = { chart: null, points: [], box, current, info };
    s.chart = new Chart(canvas, (t0, t1) => { this.zoom = [t0, t1]; this.reloadAll(); });
    this.series.set(name, s);
    await this.load(name);
  }

  async load(name) {
    const s = this.series.get(name);
    if (!s) return;
    const [t0, t1] = this.range();
    const n = Math.max(100, Math.min(4000, 2 * (s.box.clientWidth || 800)));
    const q = `/history?signal=${encodeURIComponent(name)}&start_ns=${BigInt(Math.floor(t0)) * 1000000n}&end_ns=${BigInt(Math.ceil(t1)) * 1000000n}&max_points=${n}`;
    try {
      const h = await this.auth.get(q);
      s.points = h.points.map(([t, v, qq]) => [t / 1e6, v, qq]);
      s.info.textContent = `${h.count} samples from history${h.downsampled ? ", shown as min/max per pixel column" : ""}${h.truncated ? " (truncated)" : ""}`;
    } catch (e) {
      s.points = [];
      s.info.textContent = "history not available: " + e.message;
    }
    this.draw(name);
  }

  reloadAll() { for (const n of this.series.keys()) this.load(n); }
  redrawAll() { for (const n of this.series.keys()) this.draw(n); }

  zoomBy(f) {
    const [t0, t1] = this.range();
    const mid = (t0 + t1) / 2, half = (t1 - t0) * f / 2;
    this.zoom = [mid - half, Math.min(Date.now(), mid + half)];
    this.reloadAll();
  }

  onChanges(names) {
    for (const n of names) {
      const s = this.series.get(n);
      if (!s) continue;
      const v = this.feed.values.get(n);
      const t = Number(v.ts) / 1e6;
      const y = typeof v.value === "boolean" ? (v.value ? 1 : 0) : (typeof v.value === "number" ? v.value : null);
      s.points.push([t, y, v.quality]);
      if (s.points.length > 20000) s.points.splice(0, s.points.length - 20000);
      s.current.textContent = "now " + fmtValue(v.value) + " (" + qualityText(v.quality, v.substatus) + ")";
    }
  }

  draw(name) {
    const s = this.series.get(name);
    if (!s || !this.visible) return;
    const [t0, t1] = this.range();
    const live = document.getElementById("tr-live").checked && !this.zoom;
    s.chart.set(live ? s.points : s.points.filter((p) => p[0] <= t1), t0, t1,
                live && this.feed.live ? Date.now() : 0);
  }
}
