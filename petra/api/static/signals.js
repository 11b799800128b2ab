// Signals: the table of every signal with its live value, quality (colour and text),
// age and unit; writable ones can be written by a role that may, after a review step
// that shows the limits. After a write the page shows the value read back from the
// live feed, never the value typed.
import { el, fmtAge, fmtValue, qualityText } from "./util.js";

const MAX_ROWS = 500;

function globToRegExp(glob) {
  const esc = glob.replace(/[.+^${}()|\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp("^" + esc + "$", "i");
}

export class SignalsPage {
  constructor(auth, feed) {
    this.auth = auth;
    this.feed = feed;
    this.meta = new Map();   // name -> signal description from GET /signals
    this.rows = new Map();   // name -> {tr, value, quality, age}
    this.visible = false;
    this.pendingWrite = null;
    feed.listeners.add((names) => this.onChanges(names));
    feed.stateListeners.add((live) => this.onLive(live));
    setInterval(() => { if (this.visible) this.refreshAges(); }, 1000);
    document.getElementById("sg-filter").addEventListener("input", () => this.render());
    document.getElementById("sg-writable").addEventListener("change", () => this.render());
    this.setupDialog();
  }

  async load() {
    const out = [];
    let offset = 0;
    for (;;) {  // every signal, 10 000 at a time
      const page = await this.auth.get("/signals?limit=10000&offset=" + offset);
      out.push(...page.signals);
      offset += page.signals.length;
      if (!page.signals.length || offset >= page.total) break;
    }
    this.meta = new Map(out.map((s) => [s.name, s]));
    for (const s of out) {
      if (!this.feed.values.has(s.name)) {
        this.feed.values.set(s.name, { value: s.value, quality: s.quality, substatus: s.substatus,
                                       ts: s.source_ts_ns, seen: Date.now() });
      }
    }
    const names = document.getElementById("tr-names");
    names.replaceChildren(...out.map((s) => el("option", { value: s.name })));
  }

  async show() {
    this.visible = true;
    if (!this.meta.size) {
      try { await this.load(); } catch (e) {
        document.getElementById("sg-count").textContent = "Cannot list signals: " + e.message;
        return;
      }
    }
    this.render();
  }

  hide() { this.visible = false; }

  render() {
    const text = document.getElementById("sg-filter").value.trim();
    const writableOnly = document.getElementById("sg-writable").checked;
    const rx = text ? (/[*?]/.test(text) ? globToRegExp(text) : null) : null;
    const low = text.toLowerCase();
    const chosen = [];
    for (const s of this.meta.values()) {
      if (writableOnly && !s.writable) continue;
      if (rx ? !rx.test(s.name) : (low && !s.name.toLowerCase().includes(low))) continue;
      chosen.push(s);
    }
    const shown = chosen.slice(0, MAX_ROWS);
    this.rows = new Map();
    const body = document.querySelector("#sg-table tbody");
    body.replaceChildren(...shown.map((s) => this.row(s)));
    document.getElementById("sg-count").textContent = chosen.length > MAX_ROWS
      ? `Showing ${MAX_ROWS} of ${chosen.length} signals: refine the filter.`
      : `${chosen.length} of ${this.meta.size} signals`;
    this.onLive(this.feed.live);
  }

  row(s) {
    const value = el("td", { class: "value num" });
    const quality = el("td", { class: "quality" });
    const age = el("td", { class: "num age" });
    let action;
    if (!s.writable) action = el("td", { class: "muted", text: "read-only" });
    else if (this.auth.may("signal.write")) {
      action = el("td", {}, el("button", { type: "button", "aria-label": "Set " + s.name,
                                            onclick: () => this.openWrite(s.name) }, "Set…"));
    } else {
      action = el("td", {}, el("button", { type: "button", disabled: true, "aria-describedby": "need-op-" + s.name }, "Set…"),
                  el("span", { id: "need-op-" + s.name, class: "muted", text: " needs the operator role" }));
    }
    const tr = el("tr", { "data-signal": s.name }, el("th", { scope: "row", text: s.name }), value,
                  el("td", { text: s.unit || "" }), quality, age, action);
    const r = { tr, value, quality, age };
    this.rows.set(s.name, r);
    this.paint(s.name, r);
    return tr;
  }

  paint(name, r) {
    const v = this.feed.values.get(name);
    if (!v) return;
    r.value.textContent = fmtValue(v.value);
    r.quality.textContent = qualityText(v.quality, v.substatus);
    r.tr.className = "row-" + v.quality;
    r.quality.className = "quality q-" + v.quality;
    r.age.textContent = fmtAge(Date.now() - Number(v.ts) / 1e6);
  }

  refreshAges() {
    const now = Date.now();
    for (const [name, r] of this.rows) {
      const v = this.feed.values.get(name);
      if (v) r.age.textContent = fmtAge(now - Number(v.ts) / 1e6);
    }
  }

  onChanges(names) {
    if (this.visible) {
      for (const n of names) { const r = this.rows.get(n); if (r) this.paint(n, r); }
    }
    if (this.pendingWrite) this.checkReadBack(names);
  }

  onLive(live) {
    document.getElementById("sg-table").classList.toggle("stale", !live);
    document.getElementById("sg-stale").hidden = live;
  }

  // ---- the write dialog: value -> review (limits, before/after) -> confirm -> read back
  setupDialog() {
    const $ = (id) => document.getElementById(id);
    this.dlg = $("dlg-write");
    $("dw-cancel").addEventListener("click", () => this.dlg.close());
    $("dw-close").addEventListener("click", () => this.dlg.close());
    $("dw-back").addEventListener("click", () => { $("dw-step2").hidden = true; $("dw-step1").hidden = false; $("dw-value").focus(); });
    $("dw-review").addEventListener("click", () => this.review());
    $("dw-value").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.review(); } });
    $("dw-confirm").addEventListener("click", () => this.confirm());
    this.dlg.addEventListener("close", () => { this.pendingWrite = null; });
  }

  openWrite(name) {
    const $ = (id) => document.getElementById(id);
    const s = this.meta.get(name);
    const v = this.feed.values.get(name);
    this.writing = s;
    this.pendingWrite = null;
    $("dw-name").textContent = name;
    $("dw-current").textContent = v ? fmtValue(v.value) + " (" + qualityText(v.quality, v.substatus) + ")" : "—";
    $("dw-unit").textContent = s.unit || "";
    const lim = s.type === "bool" ? "Type: true or false."
      : `Type: ${s.type}. Minimum: ${s.min ?? "none"}. Maximum: ${s.max ?? "none"}.`;
    $("dw-limits").textContent = lim;
    $("dw-value").value = "";
    $("dw-step1").hidden = false; $("dw-step2").hidden = true;
    $("dw-result").textContent = ""; $("dw-result").className = ""; delete $("dw-result").dataset.readback;
    $("dw-close").hidden = true;
    this.dlg.showModal();
    $("dw-value").focus();
  }

  parse(s, text) {
    const t = text.trim();
    if (s.type === "bool") {
      if (t === "true" || t === "1") return true;
      if (t === "false" || t === "0") return false;
      throw new Error("enter true or false");
    }
    if (t === "" || !Number.isFinite(Number(t))) throw new Error("enter a number");
    const n = Number(t);
    if (s.type === "int" && !Number.isInteger(n)) throw new Error("enter a whole number");
    if (s.min !== null && n < s.min) throw new Error(`below the minimum ${s.min}`);
    if (s.max !== null && n > s.max) throw new Error(`above the maximum ${s.max}`);
    return n;
  }

  review() {
    const $ = (id) => document.getElementById(id);
    const s = this.writing;
    let value;
    try { value = this.parse(s, $("dw-value").value); } catch (e) {
      $("dw-result").textContent = "Not written: " + e.message; $("dw-result").className = "error"; return;
    }
    this.reviewed = value;
    const cur = this.feed.values.get(s.name);
    $("dw-confirm-text").textContent = `Write ${fmtValue(value)} ${s.unit || ""} to ${s.name} (now ${cur ? fmtValue(cur.value) : "—"}; allowed ${s.min ?? "−∞"} … ${s.max ?? "+∞"})?`;
    $("dw-result").textContent = "";
    $("dw-step1").hidden = true; $("dw-step2").hidden = false;
    $("dw-confirm").focus();
  }

  async confirm() {
    const $ = (id) => document.getElementById(id);
    const s = this.writing;
    $("dw-confirm").disabled = true;
    // Armed before the request: the journal's change can reach the WebSocket before
    // the HTTP answer reaches us.
    const p = { name: s.name, since: Date.now(), accepted: false, readBack: null };
    this.pendingWrite = p;
    try {
      const res = await this.auth.put("/signals/" + encodeURIComponent(s.name), { value: this.reviewed });
      p.accepted = true;
      $("dw-result").className = "";
      $("dw-result").textContent = "Accepted (audit #" + res.audit_seq + "); waiting for the value read back from the plant…";
      $("dw-step2").hidden = true;
      $("dw-close").hidden = false;
      $("dw-close").focus();
      this.showReadBack();
      setTimeout(() => {
        if (this.pendingWrite === p && !p.readBack) {
          $("dw-result").textContent = "Accepted, but no value read back within 5 s: check the signal before relying on it.";
          $("dw-result").className = "error";
        }
      }, 5000);
    } catch (e) {
      this.pendingWrite = null;
      // No answer is not a refusal: the write may have been done before the connection
      // broke. Say so rather than guess.
      $("dw-result").textContent = e.status
        ? "Refused: " + e.message + " (HTTP " + e.status + ")"
        : "No answer from the server (" + e.message + "): the write may or may not have been done. Check the value before trying again.";
      $("dw-result").className = "error";
    } finally { $("dw-confirm").disabled = false; }
  }

  checkReadBack(names) {
    const p = this.pendingWrite;
    if (!names.includes(p.name)) return;
    const v = this.feed.values.get(p.name);
    if (!v || v.seen < p.since) return;
    p.readBack = { ...v };
    this.showReadBack();
  }

  showReadBack() {
    const p = this.pendingWrite;
    if (!p || !p.accepted || !p.readBack) return;
    const v = p.readBack;
    const r = document.getElementById("dw-result");
    r.className = v.quality === "GOOD" ? "" : "error";
    r.textContent = `Read back from the plant: ${fmtValue(v.value)} ${this.meta.get(p.name).unit || ""} (${qualityText(v.quality, v.substatus)})`;
    r.dataset.readback = fmtValue(v.value);
  }
}
