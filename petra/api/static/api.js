// Talking to the Petra API: login, token refresh, authenticated fetch.
// Tokens live in sessionStorage (gone with the tab), never in a URL or a cookie.
export const PREFIX = "/api/v1";
const KEY = "petra.tokens";

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export class Auth {
  constructor() {
    this.tokens = null;
    this.me = null;
    this.onChange = () => {};
    this.onLoggedOut = () => {};
    this._timer = null;
    this._refreshing = null;
    try { this.tokens = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { this.tokens = null; }
  }

  get token() { return this.tokens ? this.tokens.access_token : null; }
  may(permission) { return !!this.me && this.me.permissions.includes(permission); }

  _store(body) {
    // expires_in is seconds from now; refresh at 80 % of it.
    this.tokens = { access_token: body.access_token, refresh_token: body.refresh_token,
                    expires_at: Date.now() + body.expires_in * 1000 };
    sessionStorage.setItem(KEY, JSON.stringify(this.tokens));
    this._schedule(body.expires_in * 800);
    this.onChange();
  }

  _schedule(ms) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.refresh().catch(() => {}), Math.max(1000, ms));
  }

  async login(username, password) {
    const resp = await fetch(PREFIX + "/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }) });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError(resp.status, body.error || resp.statusText);
    this._store(body);
    await this.loadMe();
  }

  async resume() {
    if (!this.tokens) return false;
    const left = this.tokens.expires_at - Date.now();
    try {
      if (left < 5000) await this.refresh(); else this._schedule(left * 0.8);
      await this.loadMe();
      return true;
    } catch { this.clear(); return false; }
  }

  async loadMe() { this.me = await this.get("/me"); }

  refresh() {
    // One refresh at a time: a refresh token works once.
    if (!this._refreshing) {
      this._refreshing = (async () => {
        if (!this.tokens) throw new ApiError(401, "not logged in");
        const resp = await fetch(PREFIX + "/auth/refresh", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: this.tokens.refresh_token }) });
        const body = await resp.json().catch(() => ({}));
        if (resp.status === 401 || resp.status === 400) { this.clear(); this.onLoggedOut(); }
        if (!resp.ok) throw new ApiError(resp.status, body.error || resp.statusText);
        this._store(body);
      })().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async logout() {
    const t = this.tokens;
    if (t) {
      await fetch(PREFIX + "/auth/logout", {
        method: "POST", headers: { "Content-Type": "application/json",
                                   Authorization: "Bearer " + t.access_token },
        body: JSON.stringify({ refresh_token: t.refresh_token }) }).catch(() => {});
    }
    this.clear();
  }

  clear() {
    clearTimeout(this._timer);
    this.tokens = null; this.me = null;
    sessionStorage.removeItem(KEY);
  }

  async request(method, path, body, retried = false) {
    if (!this.tokens) throw new ApiError(401, "not logged in");
    const opts = { method, headers: { Authorization: "Bearer " + this.tokens.access_token } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try { resp = await fetch(PREFIX + path, opts); }
    catch (e) { throw new ApiError(0, "the server did not answer (" + e.message + ")"); }
    if (resp.status === 401 && !retried) {
      await this.refresh();
      return this.request(method, path, body, true);
    }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError(resp.status, data.error || resp.statusText);
    return data;
  }

  get(path) { return this.request("GET", path); }
  put(path, body) { return this.request("PUT", path, body); }
  post(path, body) { return this.request("POST", path, body); }
}
