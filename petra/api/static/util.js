// Small DOM and formatting helpers shared by the pages.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(4) : String(+v.toFixed(4));
  }
  return String(v);
}

export function fmtAge(ms) {
  if (!(ms >= 0)) return "—";
  const s = ms / 1000;
  if (s < 1) return "<1 s";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

export function fmtTime(ns) {
  if (!ns) return "—";
  const d = new Date(Number(ns) / 1e6);
  return d.toLocaleString(undefined, { hour12: false });
}

export function fmtSeconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 1e-3) return (s * 1e6).toFixed(1) + " µs";
  if (s < 1) return (s * 1e3).toFixed(2) + " ms";
  return s.toFixed(2) + " s";
}

// Quality as text and colour class: never colour alone.
export function qualityText(q, sub) {
  return sub && sub !== "NONE" ? q + " · " + sub.toLowerCase().replaceAll("_", " ") : q;
}

export function pill(text, cls) { return el("span", { class: "pill " + cls, text }); }
