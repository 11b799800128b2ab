// The page's entry point: login, the header, hash routing between the four pages, the
// connection banner. Every page reads through ./api.js (REST) and ./live.js (the one
// WebSocket); only those two talk to the server (the sampler/renderer split of
// petra-top: pages render what those hand them).
import { Auth } from "./api.js";
import { LiveFeed } from "./live.js";
import { OverviewPage } from "./overview.js";
import { SignalsPage } from "./signals.js";
import { AlarmsPage } from "./alarms.js";
import { TrendsPage } from "./trends.js";

const $ = (id) => document.getElementById(id);
const auth = new Auth();
const feed = new LiveFeed(auth);
const pages = {
  overview: new OverviewPage(auth),
  signals: new SignalsPage(auth, feed),
  alarms: new AlarmsPage(auth, feed),
  trends: new TrendsPage(auth, feed),
};
let current = null;
window.petra = { auth, feed, pages };  // for the browser tests and the curious

function banner(text) {
  const b = $("banner");
  b.textContent = text || "";
  b.hidden = !text;
}

feed.stateListeners.add((live, detail) => {
  const s = $("live-state");
  s.textContent = live ? "live" : "not live";
  s.className = "pill " + (live ? "live" : "down");
  banner(live ? "" : "Connection to the plant lost (" + (detail || "reconnecting") + "): values are not live. Reconnecting…");
});
auth.onChange = () => feed.reauth();
auth.onLoggedOut = () => showLogin("Your session ended: log in again.");

function route() {
  const name = (location.hash || "#overview").slice(1);
  const page = pages[name] ? name : "overview";
  if (current && current !== page) pages[current].hide();
  for (const p of Object.keys(pages)) $("page-" + p).hidden = p !== page;
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (current !== page) { current = page; pages[page].show(); }
}

function showLogin(message) {
  feed.stop();
  if (current) pages[current].hide();
  current = null;
  banner("");
  $("top").hidden = true;
  for (const p of Object.keys(pages)) $("page-" + p).hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-user").focus();
}

async function enter() {
  $("login").hidden = true;
  $("top").hidden = false;
  $("whoami").textContent = auth.me.user + " (" + auth.me.role + ")";
  feed.start();
  route();
  $("main").focus();
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  try {
    await auth.login($("login-user").value, $("login-pass").value);
    $("login-pass").value = "";
    await enter();
  } catch (err) {
    $("login-error").textContent = "Not logged in: " + err.message;
  }
});

$("logout").addEventListener("click", async () => { await auth.logout(); showLogin("Logged out."); });
window.addEventListener("hashchange", () => { if (auth.me) route(); });

(async () => {
  if (await auth.resume()) await enter(); else showLogin();
})();
