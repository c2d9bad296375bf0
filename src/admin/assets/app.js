// The asched dashboard: reads GET /api/overview every two seconds and draws it; the buttons
// call the JSON API. Values are only ever set as text, never parsed as HTML.
"use strict";

const refreshMs = 2000;
let token = sessionStorage.getItem("asched-token") || "";
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {
  token = hash.get("token");
  sessionStorage.setItem("asched-token", token);
  history.replaceState(null, "", location.pathname);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { hour12: false });
}

function ran(r) {
  if (!r.started_at) return "–";
  const ms = new Date(r.finished_at) - new Date(r.started_at);
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

function showMessage(text, info) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = info ? "info" : "";
  m.hidden = !text;
}

function fill(tableId, rows, columns, empty) {
  const body = document.querySelector("#" + tableId + " tbody");
  const fresh = document.createElement("tbody");
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", empty, "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  for (const r of rows) fresh.appendChild(r);
  body.replaceWith(fresh);
}

function row(cells, attrs) {
  const tr = el("tr");
  for (const [k, v] of Object.entries(attrs || {})) tr.dataset[k] = v;
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function button(label, action, id, path, body) {
  const b = el("button", label);
  b.type = "button";
  b.dataset.action = action;
  b.dataset.id = id;
  b.addEventListener("click", () => act(b, path, body));
  return b;
}

async function act(b, path, body) {
  b.disabled = true;
  try {
    const headers = { "Content-Type": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
    const answer = await r.json().catch(() => ({}));
    if (r.status === 401) {
      document.getElementById("token-form").hidden = false;
      showMessage(answer.error || "a bearer token is needed");
    } else if (!r.ok) {
      showMessage(answer.error || ("HTTP " + r.status));
    } else {
      showMessage(answer.job_id ? "started job " + answer.job_id : "", true);
    }
  } catch (e) {
    showMessage("the server did not answer: " + e);
  }
  b.disabled = false;
  refresh();
}

const enc = encodeURIComponent;

function draw(o) {
  document.getElementById("identity").textContent = o.identity ? "node " + o.identity : "";
  const h = o.health || {};
  const badge = document.getElementById("health");
  badge.textContent = h.status === "ok" ? "store ok" : "store degraded";
  badge.className = "badge " + (h.status === "ok" ? "ok" : "bad");
  badge.title = h.reason || "";
  document.getElementById("updated").textContent = "updated " + when(o.now);

  const schedules = (o.schedules || []).map((s) => {
    const actions = el("td");
    if (s.paused) {
      actions.appendChild(button("Resume", "resume", s.id, "/api/schedules/" + enc(s.id) + "/resume", { from: "now" }));
    } else {
      actions.appendChild(button("Pause", "pause", s.id, "/api/schedules/" + enc(s.id) + "/pause"));
    }
    actions.appendChild(button("Run now", "run-now", s.id, "/api/schedules/" + enc(s.id) + "/run-now"));
    const state = s.paused ? "paused" : "active";
    return row([s.id, s.task_id, el("td", s.describe, "trigger"), when(s.next_fire_time),
                when(s.last_fire_time), el("td", state, "state-" + state), actions],
               { scheduleId: s.id, state });
  });
  document.getElementById("schedule-count").textContent = "(" + schedules.length + ")";
  fill("schedules", schedules, 7, "no schedules");

  const jobs = (o.jobs || []).map((j) => {
    const actions = el("td");
    actions.appendChild(button("Cancel", "cancel", j.id, "/api/jobs/" + enc(j.id) + "/cancel"));
    const state = j.acquired_by ? "running on " + j.acquired_by : "queued";
    return row([j.id, j.task_id, j.schedule_id || "–", state, when(j.earliest_start),
                j.attempt, actions], { jobId: j.id });
  });
  document.getElementById("job-count").textContent = "(" + jobs.length + ")";
  fill("jobs", jobs, 7, "no job is queued or running");

  fill("results", (o.results || []).map((r) =>
    row([when(r.finished_at), r.job_id, r.task_id, el("td", r.outcome, "outcome-" + r.outcome),
         ran(r), r.worker, el("td", r.exception_message || "", "error")], { jobId: r.job_id })),
    7, "no results yet");

  fill("workers", (o.workers || []).map((w) =>
    row([w.identity, el("td", w.live ? "live" : "dead", w.live ? "state-live" : "state-dead"),
         w.host, w.pid, w.role, when(w.last_seen)])), 6, "no workers registered");

  const store = document.getElementById("store");
  store.replaceChildren();
  const facts = [["health", h.status || "?"], ["scheduler state", h.state || "?"],
                 ["broker", h.broker_connected ? "connected" : "disconnected"]];
  if (h.reason) facts.push(["problem", h.reason]);
  facts.push(["tasks", (o.tasks || []).map((t) => t.id).join(", ") || "–"]);
  for (const [k, v] of facts) { store.appendChild(el("dt", k)); store.appendChild(el("dd", v)); }
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const r = await fetch("/api/overview", { cache: "no-store" });
    const o = await r.json();
    draw(o);
    if (!r.ok) showMessage(o.error || ("HTTP " + r.status));
    document.body.dataset.loaded = "true";
  } catch (e) {
    const badge = document.getElementById("health");
    badge.textContent = "server unreachable";
    badge.className = "badge bad";
  }
  timer = setTimeout(refresh, refreshMs);
}

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = document.getElementById("token").value;
  sessionStorage.setItem("asched-token", token);
  document.getElementById("token-form").hidden = true;
  showMessage("token set: try again", true);
});

refresh();
