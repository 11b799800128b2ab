// Overview: plant state, scan timing, devices and processes, from GET /status (every 2 s).
import { el, fmtSeconds, pill } from "./util.js";

export class OverviewPage {
  constructor(auth, app) { this.auth = auth; this.app = app; this.timer = null; }

  show() { this.load(); this.timer = setInterval(() => this.load(), 2000); }
  hide() { clearInterval(this.timer); }

  async load() {
    let st;
    try { st = await this.auth.get("/status"); }
    catch (e) {
      document.getElementById("ov-updated").textContent = "Status not available: " + e.message;
      document.getElementById("ov-plant").replaceChildren(pill("unknown", "st-unknown"));
      return;
    }
    document.getElementById("instance").textContent = st.instance;
    document.getElementById("ov-updated").textContent = "Updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
    const health = st.health ? st.health.status : "unknown";
    const plant = document.getElementById("ov-plant");
    plant.className = "big st-" + health;
    plant.textContent = health === "unknown" ? "unknown (no supervisor health)" : health;
    const reasons = (st.health && st.health.reasons) || [];
    document.getElementById("ov-reasons").replaceChildren(...reasons.map((r) => el("li", { text: r })));
    const s = st.scan;
    const rows = [["Period", fmtSeconds(s.period_s)], ["Wake-up jitter p50", fmtSeconds(s.wake_p50_s)],
      ["Wake-up jitter p99", fmtSeconds(s.wake_p99_s)], ["Wake-up jitter max", fmtSeconds(s.wake_max_s)],
      ["Execution avg / max", fmtSeconds(s.exec_avg_s) + " / " + fmtSeconds(s.exec_max_s)],
      ["Cycles", String(s.cycles)], ["Overruns", String(s.overruns)], ["Skipped", String(s.skipped)],
      ["Signals", String(st.signals)]];
    document.getElementById("ov-scan").replaceChildren(
      ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const devs = st.devices || [];
    document.querySelector("#ov-devices tbody").replaceChildren(...(devs.length ? devs.map((d) => el("tr", {},
      el("th", { scope: "row", text: d.name }),
      el("td", {}, pill(d.connection, "st-" + d.connection)),
      el("td", {}, pill(d.process, "st-" + d.process)),
      el("td", { class: "num", text: String(d.restarts) }),
      el("td", { text: d.reason || "" }))) : [el("tr", {}, el("td", { colspan: "5", text: "No devices configured." }))]));
    document.querySelector("#ov-procs tbody").replaceChildren(...st.processes.map((p) => el("tr", {},
      el("th", { scope: "row", text: p.role }),
      el("td", {}, pill(p.state, "st-" + p.state)),
      el("td", { class: "num", text: String(p.pid) }),
      el("td", { class: "num", text: String(p.restarts) }),
      el("td", { class: "num", text: p.heartbeat_age_s.toFixed(1) + " s" }))));
  }
}
