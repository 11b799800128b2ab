// Alarms: the active list (priority, then newest first), acknowledge / shelve / comment
// for the roles that may, and the event history. Live through the page's WebSocket
// ({"op": "subscribe_alarms"}); where the server does not offer that, polled.
import { el, fmtTime, pill } from "./util.js";

const PRIORITY = { critical: 0, high: 1, medium: 2, low: 3 };
const NEEDS_ACK = new Set(["unack", "rtn_unack"]);

export class AlarmsPage {
  constructor(auth, feed) {
    this.auth = auth;
    this.feed = feed;
    this.alarms = [];
    this.events = [];
    this.nextSeq = 0;
    this.visible = false;
    this.poll = null;
    this._reload = null;
    feed.alarmListeners.add((msg) => this.onMessage(msg));
    document.getElementById("al-ack-all").addEventListener("click", () => this.ackShown());
    const $ = (id) => document.getElementById(id);
    $("da-cancel").addEventListener("click", () => $("dlg-alarm").close());
  }

  async show() {
    this.visible = true;
    await this.load();
    // Polled as well as pushed: a pushed event also triggers a reload at once.
    this.poll = setInterval(() => this.load(), this.feed.alarmsSupported ? 10000 : 3000);
  }

  hide() { this.visible = false; clearInterval(this.poll); }

  onMessage(msg) {
    if (msg.type === "alarms") { this.alarms = msg.alarms; if (this.visible) this.renderList(); }
    else if (msg.type === "alarm_event") { if (this.visible) this.soon(); }
  }

  soon() {
    clearTimeout(this._reload);
    this._reload = setTimeout(() => this.load(), 150);
  }

  async load() {
    const note = document.getElementById("al-note");
    try {
      const list = await this.auth.get("/alarms");
      this.alarms = list.alarms;
      const ev = await this.auth.get("/alarms/events?after_seq=" + this.nextSeq + "&limit=200");
      this.events = [...ev.events.slice().reverse(), ...this.events].slice(0, 500);
      this.nextSeq = ev.next_seq;
      note.textContent = "Updated " + new Date().toLocaleTimeString(undefined, { hour12: false });
      note.className = "muted";
    } catch (e) {
      note.textContent = (e.status === 404 ? "This plant's API offers no alarm list (" : "Alarms not available (") + e.message + ")";
      note.className = "error";
      return;
    }
    this.renderList();
    this.renderEvents();
  }

  active() {
    return this.alarms.filter((a) => a.state !== "normal")
      .sort((a, b) => ((PRIORITY[a.priority] ?? 9) - (PRIORITY[b.priority] ?? 9))
                       || ((b.raised_ns || b.since_ns || 0) - (a.raised_ns || a.since_ns || 0)));
  }

  renderList() {
    const rows = this.active().map((a) => {
      const acts = el("td", { class: "actions" });
      if (NEEDS_ACK.has(a.state)) {
        acts.append(this.button("Acknowledge", a, "alarm.ack", () => this.act("ack", { alarms: [a.name] })));
      }
      if (a.state === "shelved") {
        acts.append(this.button("Unshelve", a, "alarm.shelve", () => this.act("unshelve", { alarms: [a.name] })));
      } else if (a.state !== "out_of_service") {
        acts.append(this.button("Shelve…", a, "alarm.shelve", () => this.shelveDialog(a)));
      }
      acts.append(this.button("Comment…", a, "alarm.ack", () => this.commentDialog(a)));
      const since = a.raised_ns || a.since_ns;
      return el("tr", { "data-alarm": a.name },
        el("td", {}, pill(a.priority, "prio-" + a.priority)),
        el("th", { scope: "row" }, a.name, el("div", { class: "muted", text: a.area ? "area " + a.area : "" })),
        el("td", {}, pill(a.state.replaceAll("_", " "), NEEDS_ACK.has(a.state) ? "q-BAD" : "q-UNCERTAIN")),
        el("td", { text: fmtTime(since) }),
        el("td", { text: a.message || a.description || "" }),
        acts);
    });
    document.querySelector("#al-table tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: "6", text: "No active alarms." }))]));
    const ackAll = document.getElementById("al-ack-all");
    ackAll.disabled = !this.auth.may("alarm.ack") || !this.active().some((a) => NEEDS_ACK.has(a.state));
  }

  button(label, a, permission, fn) {
    const ok = this.auth.may(permission);
    const b = el("button", { type: "button", "aria-label": label.replace("…", "") + " " + a.name, onclick: fn }, label);
    if (!ok) { b.disabled = true; b.title = "needs a role with " + permission; }
    return b;
  }

  renderEvents() {
    document.querySelector("#al-events tbody").replaceChildren(...this.events.slice(0, 200).map((e) => el("tr", {},
      el("td", { text: fmtTime(e.time_ns) }), el("td", { text: e.alarm }),
      el("td", { text: e.event + (e.to_state ? " → " + e.to_state : "") }),
      el("td", { text: e.user ? e.user + (e.role ? " (" + e.role + ")" : "") : "" }),
      el("td", { text: e.reason || e.message || "" }))));
  }

  async act(op, body) {
    const note = document.getElementById("al-note");
    try {
      const res = await this.auth.post("/alarms/" + op, body);
      note.textContent = op + ": done " + ((res.done || []).join(", ") || "nothing to do");
      note.className = "muted";
    } catch (e) {
      note.textContent = e.status === 503 || !e.status
        ? op + ": no answer in time (" + e.message + "); it may still be done: watch the list"
        : op + " refused: " + e.message + " (HTTP " + e.status + ")";
      note.className = "error";
      throw e;
    } finally { this.soon(); }
  }

  ackShown() {
    const names = this.active().filter((a) => NEEDS_ACK.has(a.state)).map((a) => a.name);
    if (names.length) this.act("ack", { alarms: names }).catch(() => {});
  }

  dialog(title, fields, submit) {
    const $ = (id) => document.getElementById(id);
    $("da-h").textContent = title;
    $("da-fields").replaceChildren(...fields);
    $("da-result").textContent = "";
    const ok = $("da-ok").cloneNode(true);  // drop the previous listener
    $("da-ok").replaceWith(ok);
    ok.addEventListener("click", async () => {
      try { await submit(); $("dlg-alarm").close(); }
      catch (e) { $("da-result").textContent = e.message; $("da-result").className = "error"; }
    });
    $("dlg-alarm").showModal();
    const first = $("da-fields").querySelector("input, textarea, select");
    if (first) first.focus();
  }

  shelveDialog(a) {
    const reason = el("input", { id: "da-reason", required: true, maxlength: "200" });
    const dur = el("select", { id: "da-duration" },
      ...[["900", "15 min"], ["3600", "1 h"], ["14400", "4 h"], ["28800", "8 h"], ["oneshot", "until it clears once"]]
        .map(([v, t]) => el("option", { value: v, text: t })));
    this.dialog("Shelve " + a.name, [el("label", { for: "da-reason", text: "Reason (required)" }), reason,
      el("label", { for: "da-duration", text: "For" }), dur], async () => {
      if (!reason.value.trim()) throw new Error("give a reason");
      const body = { alarms: [a.name], reason: reason.value.trim() };
      if (dur.value === "oneshot") body.oneshot = true; else body.duration_s = Number(dur.value);
      await this.act("shelve", body);
    });
  }

  commentDialog(a) {
    const text = el("textarea", { id: "da-text", rows: "3", maxlength: "500" });
    this.dialog("Comment on " + a.name, [el("label", { for: "da-text", text: "Comment" }), text], async () => {
      if (!text.value.trim()) throw new Error("write a comment");
      await this.act("comment", { alarms: [a.name], text: text.value.trim() });
    });
  }
}
