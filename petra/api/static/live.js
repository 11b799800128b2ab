// The one WebSocket of the page: live values and alarm events.
// Loss of the connection is reported at once (onState(false)) and the feed reconnects
// by itself with exponential backoff and jitter (0.5 s doubling to 10 s), then
// authenticates, subscribes again and takes a fresh snapshot: nothing shown stays
// claimed as live while it is not.
import { PREFIX } from "./api.js";

export class LiveFeed {
  constructor(auth) {
    this.auth = auth;
    this.patterns = ["*"];
    this.values = new Map();          // name -> {value, quality, substatus, ts, seen}
    this.listeners = new Set();       // (changedNames[]) => void
    this.stateListeners = new Set();  // (live: bool, detail) => void
    this.alarmListeners = new Set();  // (message) => void
    this.live = false;
    this.ws = null;
    this.backoff = 500;
    this.alarmsSupported = null;      // null: not known yet
    this._stopped = true;
    this._retry = null;
  }

  start() { this._stopped = false; this._connect(); }

  stop() {
    this._stopped = true;
    clearTimeout(this._retry);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  _setLive(live, detail) {
    if (this.live === live && live) return;
    this.live = live;
    for (const f of this.stateListeners) f(live, detail);
  }

  _connect() {
    if (this._stopped) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + PREFIX + "/ws";
    let ws;
    try { ws = new WebSocket(url); } catch (e) { this._lost("cannot open: " + e.message); return; }
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ op: "auth", token: this.auth.token }));
    ws.onmessage = (ev) => this._message(ws, ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.code === 4401) this.auth.refresh().catch(() => {});
      this._lost(ev.code === 4401 ? "credentials refused" : "connection closed (" + ev.code + ")");
    };
    ws.onerror = () => {};
  }

  _lost(why) {
    this._setLive(false, why);
    if (this._stopped) return;
    const wait = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(10000, this.backoff * 2);
    clearTimeout(this._retry);
    this._retry = setTimeout(() => this._connect(), wait);
  }

  reauth() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.auth.token) {
      this.ws.send(JSON.stringify({ op: "auth", id: "reauth", token: this.auth.token }));
    }
  }

  _message(ws, data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    switch (msg.type) {
      case "hello":
        if (msg.id === "reauth") return;
        ws.send(JSON.stringify({ op: "subscribe", id: "values", signals: this.patterns }));
        ws.send(JSON.stringify({ op: "subscribe_alarms", id: "alarms" }));
        return;
      case "snapshot":
      case "resync": {
        const names = this._apply(Object.entries(msg.signals).map(([k, v]) => ({ signal: k, ...v })));
        if (msg.type === "snapshot") { this.backoff = 500; this._setLive(true); }
        this._emit(names);
        return;
      }
      case "changes":
        this._emit(this._apply(msg.changes));
        return;
      case "alarms":
      case "alarm_event":
        this.alarmsSupported = true;
        for (const f of this.alarmListeners) f(msg);
        return;
      case "error":
        if (msg.id === "alarms") { this.alarmsSupported = false; for (const f of this.alarmListeners) f(msg); }
        return;
      default:
    }
  }

  _apply(changes) {
    const now = Date.now();
    const names = [];
    for (const c of changes) {
      this.values.set(c.signal, { value: c.value, quality: c.quality,
                                  substatus: c.substatus || "NONE", ts: c.ts, seen: now });
      names.push(c.signal);
    }
    return names;
  }

  _emit(names) { for (const f of this.listeners) f(names); }
}
