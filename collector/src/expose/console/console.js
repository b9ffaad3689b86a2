// The mailpulse console: reads the collector's JSON API and draws it. Every value is put in the
// page as text (never as markup). Approving or rejecting sends the API token as a bearer token,
// which a page on another origin cannot do without a CORS preflight the collector never grants.
"use strict";

const REFRESH_MS = 5000;
const TOKEN_KEY = "mailpulse.token";
let selected = null; // fingerprint of the alert shown in detail
let alertsByFingerprint = new Map();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function when(ms) {
  if (!ms) return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function status(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function where(labels) {
  return Object.entries(labels)
    .filter(([k]) => k !== "alertname" && k !== "severity")
    .map(([k, v]) => k + "=" + v)
    .join(" ");
}

async function loadFleet(alerts, pending) {
  const agents = (await getJson("/api/v1/agents")) || [];
  const tbody = document.querySelector("#fleet tbody");
  fill(tbody, agents.map((a) => el("tr", { "data-agent": a.agent_id },
    el("td", {}, a.agent_id),
    el("td", {}, a.host),
    el("td", {}, el("span", { class: "badge " + (a.up ? "up" : "down") }, a.up ? "up" : "down")),
    el("td", {}, a.version),
    el("td", {}, when(a.last_seen_unix_ms)),
    el("td", {}, a.batches_applied))));
  const firing = alerts.filter((a) => a.state === "firing").length;
  const up = agents.filter((a) => a.up).length;
  const waiting = pending ? pending.awaiting_approval.length : 0;
  const tile = (label, value, id) => el("div", { class: "tile", id }, el("b", {}, value), label);
  fill(document.getElementById("summary"), [
    tile("agents up of " + agents.length, up, "tile-agents"),
    tile("alerts firing", firing, "tile-firing"),
    tile("actions waiting for approval", waiting, "tile-waiting"),
  ]);
}

async function loadAlerts() {
  const alerts = (await getJson("/api/v1/alerts?limit=200")) || [];
  alertsByFingerprint = new Map(alerts.map((a) => [a.fingerprint, a]));
  const tbody = document.querySelector("#alerts tbody");
  fill(tbody, alerts.map((a) => {
    const tr = el("tr", { class: "selectable" + (a.fingerprint === selected ? " selected" : ""), "data-fingerprint": a.fingerprint },
      el("td", {}, el("span", { class: "badge " + a.state }, a.state)),
      el("td", {}, a.labels.alertname || ""),
      el("td", {}, a.labels.severity || ""),
      el("td", { class: "mono" }, where(a.labels)),
      el("td", {}, when(a.active_since_unix_ms)),
      el("td", {}, a.annotations.summary || ""));
    tr.addEventListener("click", () => showAlert(a.fingerprint));
    return tr;
  }));
  if (selected && alertsByFingerprint.has(selected)) await showAlert(selected, true);
  return alerts;
}

async function showAlert(fingerprint, refresh) {
  const a = alertsByFingerprint.get(fingerprint);
  if (!a) return;
  selected = fingerprint;
  if (!refresh) {
    for (const tr of document.querySelectorAll("#alerts tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.fingerprint === fingerprint);
    }
  }
  const detail = document.getElementById("alert-detail");
  detail.hidden = false;
  detail.dataset.fingerprint = fingerprint;
  document.getElementById("detail-title").textContent =
    (a.labels.alertname || "") + " — " + a.state + " since " + when(a.active_since_unix_ms);
  document.getElementById("detail-summary").textContent = a.annotations.summary || "";
  document.getElementById("detail-description").textContent = a.annotations.description || "";
  document.getElementById("detail-recommendation").textContent = a.annotations.recommendation || "";
  document.getElementById("detail-detectors").textContent =
    (a.detectors || []).join(", ") + " (peak score " + Number(a.peak_score).toFixed(3) + ", " + a.windows + " windows)";
  const runbook = document.getElementById("detail-runbook");
  const url = a.annotations.runbook_url || "";
  // Only links of this collector or http(s) ones are followed.
  runbook.href = /^(https?:\/\/|\/)/.test(url) ? url : "#";
  runbook.textContent = url || "none";
  const trace = await getJson("/api/v1/alerts/" + encodeURIComponent(fingerprint) + "/series");
  drawChart(document.getElementById("chart"), trace, a);
}

function finite(v) {
  return typeof v === "number" && Number.isFinite(v);
}

// The series with its band: lower..upper filled, expected dashed, observed solid, windows
// outside the band marked.
function drawChart(holder, trace, alert) {
  const caption = document.getElementById("chart-caption");
  if (!trace || !trace.points || trace.points.length === 0) {
    holder.replaceChildren();
    caption.textContent = "No series for this alert (advice and agent alerts have none).";
    return;
  }
  const pts = trace.points;
  const W = 900, H = 260, L = 56, R = 10, T = 10, B = 28;
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) {
    for (const v of [p.observed, p.lower, p.upper, p.expected]) {
      if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
  }
  if (!finite(lo)) { lo = 0; hi = 1; }
  if (hi === lo) { hi = lo + 1; }
  lo = Math.min(0, lo);
  const t0 = pts[0].window_start_unix_ms, t1 = pts[pts.length - 1].window_start_unix_ms;
  const x = (t) => L + (t1 === t0 ? 0 : (t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const chart = svg("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, role: "img",
    "aria-label": "observed values and the expected band" });
  chart.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  chart.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    const label = svg("text", { x: 4, y: y(v) + 4 });
    label.textContent = Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
    chart.append(label);
  }
  for (const t of [t0, t1]) {
    const label = svg("text", { x: Math.min(x(t), W - 150), y: H - 8 });
    label.textContent = when(t);
    chart.append(label);
  }
  // The band: runs of windows with both edges, one polygon each.
  let run = [];
  const flush = () => {
    if (run.length > 1) {
      const top = run.map((p) => x(p.window_start_unix_ms) + "," + y(p.upper));
      const bottom = run.slice().reverse().map((p) => x(p.window_start_unix_ms) + "," + y(p.lower));
      chart.append(svg("polygon", { class: "band", points: top.concat(bottom).join(" ") }));
    }
    run = [];
  };
  for (const p of pts) { if (finite(p.lower) && finite(p.upper)) run.push(p); else flush(); }
  flush();
  const line = (key, cls) => {
    let d = "", pen = "M";
    for (const p of pts) {
      if (finite(p[key])) { d += pen + x(p.window_start_unix_ms).toFixed(1) + "," + y(p[key]).toFixed(1) + " "; pen = "L"; }
      else pen = "M";
    }
    if (d) chart.append(svg("path", { class: cls, d }));
  };
  line("expected", "expected");
  line("observed", "observed");
  let outside = 0;
  for (const p of pts) {
    if (finite(p.observed) && finite(p.lower) && finite(p.upper) && (p.observed > p.upper || p.observed < p.lower)) {
      chart.append(svg("circle", { class: "outside", cx: x(p.window_start_unix_ms), cy: y(p.observed), r: 3 }));
      outside++;
    }
  }
  holder.replaceChildren(chart);
  caption.textContent = (alert.labels.alertname || "") + ": " + pts.length + " windows of " + trace.window_secs +
    " s; solid: observed, dashed: expected, shaded: the band; " + outside + " windows outside it.";
}

function stepText(step) {
  if (step.Action) {
    const [kind, params] = step.Action;
    const p = Object.entries(params || {}).map(([k, v]) => k + "=" + v).join(" ");
    return kind + (p ? " " + p : "");
  }
  if (step.Notify !== undefined) return "notify: " + step.Notify;
  return JSON.stringify(step);
}

async function loadActions() {
  const pending = await getJson("/api/v1/actions");
  const waiting = document.querySelector("#pending tbody");
  const running = document.querySelector("#running tbody");
  if (!pending) {
    document.getElementById("kill-state").textContent = "Remediation is not configured on this collector.";
    fill(waiting, []);
    fill(running, []);
    return null;
  }
  document.getElementById("kill-state").textContent = pending.killed
    ? "Kill switch ON: no action is sent."
    : "Kill switch off: playbooks run within their guards.";
  fill(waiting, pending.awaiting_approval.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, r.id),
    el("td", {}, r.playbook),
    el("td", {}, r.alert.alertname + " " + r.alert.summary),
    el("td", {}, r.host),
    el("td", { class: "mono" }, r.steps.map(stepText).join("\n")),
    el("td", {}, when(r.approval_expires_ms)),
    el("td", {},
      decisionButton(r.id, "approve", "Approve"),
      decisionButton(r.id, "reject", "Reject")))));
  const rows = pending.running.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, r.id), el("td", {}, (r.revert ? "revert of " : "") + r.playbook + " (" + r.mode + ")"),
    el("td", {}, r.alert.alertname), el("td", {}, r.host),
    el("td", { class: "mono" }, r.steps.map(stepText).join("\n")), el("td", {}, "running")));
  for (const v of pending.reverts) {
    rows.push(el("tr", { "data-id": v.id },
      el("td", {}, v.id), el("td", {}, "revert " + v.playbook), el("td", {}, v.alert.alertname),
      el("td", {}, v.host),
      el("td", { class: "mono" }, v.kind + " " + Object.entries(v.params).map(([k, x]) => k + "=" + x).join(" ")),
      el("td", {}, v.due_ms ? "at " + when(v.due_ms) : "when the alert resolves")));
  }
  fill(running, rows);
  return pending;
}

function decisionButton(id, verb, label) {
  const b = el("button", { class: verb, type: "button", "data-id": id }, label);
  b.addEventListener("click", () => decide(id, verb));
  return b;
}

// The outcome of the latest approval or rejection (kept until the next one).
function decision(text, isError) {
  const d = document.getElementById("decision");
  d.textContent = text;
  d.className = isError ? "error" : "";
}

async function decide(id, verb) {
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  if (!token) {
    decision("Enter the API token first (it is sent as a bearer token; this page keeps it for the session only).", true);
    return;
  }
  const r = await fetch("/api/v1/actions/" + encodeURIComponent(id) + "/" + verb, {
    method: "POST",
    headers: { Authorization: "Bearer " + token },
  });
  const text = (await r.text()).trim();
  if (r.ok) decision("Action " + id + ": " + text + ".", false);
  else decision("Action " + id + " not " + verb + "d: HTTP " + r.status + " " + text, true);
  await refresh();
}

async function loadAudit() {
  const entries = (await getJson("/api/v1/audit?limit=200")) || [];
  fill(document.querySelector("#audit tbody"), entries.map((e) => el("tr", { "data-seq": e.seq, "data-event": e.event, "data-action": e.action_id || "" },
    el("td", {}, e.seq),
    el("td", {}, e.at),
    el("td", {}, e.event),
    el("td", {}, e.actor),
    el("td", {}, e.action_id || ""),
    el("td", {}, e.kind || ""),
    el("td", { class: "mono" }, Object.entries(e.params || {}).map(([k, v]) => k + "=" + v).join(" ")),
    el("td", {}, e.host || ""),
    el("td", {}, (e.mode || "") + (e.dry_run && e.mode !== "dry_run" ? " (dry run)" : "")),
    el("td", { class: "mono" }, [e.status, e.detail].filter(Boolean).join(": ")))));
}

async function loadDns() {
  const changes = (await getJson("/api/v1/dns/changes?limit=100")) || [];
  fill(document.querySelector("#dns tbody"), changes.map((c) => el("tr", { "data-id": c.id },
    el("td", {}, when(c.at_unix_ms)),
    el("td", {}, c.kind),
    el("td", {}, c.target),
    el("td", {}, c.server || "default resolver"),
    el("td", { class: "mono" }, c.old_rcode === "noerror" ? c.old_answer : c.old_rcode),
    el("td", { class: "mono" }, c.new_rcode === "noerror" ? c.new_answer : c.new_rcode),
    el("td", {}, c.agent_id))));
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const alerts = await loadAlerts();
    const pending = await loadActions();
    await loadFleet(alerts, pending);
    await loadAudit();
    await loadDns();
    document.body.dataset.loaded = "true";
    if (!document.getElementById("status").classList.contains("error")) {
      status("Updated " + when(Date.now()) + ".", false);
    }
  } catch (e) {
    status("Could not read the collector: " + e.message, true);
  } finally {
    refreshing = false;
  }
}

function showTokenState() {
  document.getElementById("token-state").textContent =
    sessionStorage.getItem(TOKEN_KEY) ? "token set" : "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    showTokenState();
  });
  showTokenState();
  refresh();
  setInterval(refresh, REFRESH_MS);
});
