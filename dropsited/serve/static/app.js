// The review page: fetches /api/state, draws it, posts answers; live through /events.
// Task text is untrusted: it reaches the page only through textContent and attribute
// values (el() below), never parsed as markup.
"use strict";

const TOKEN = document.querySelector('meta[name="dropsite-token"]').content;
const SVG = "http://www.w3.org/2000/svg";
const drafts = new Map();  // what the person typed, kept across redraws
let refreshing = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function when(iso) {
  const moment = new Date(iso);
  return isNaN(moment) ? String(iso || "") : moment.toLocaleString();
}

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 3500);
}

function person() {
  const input = document.getElementById("person");
  const name = input.value.trim();
  if (!name) {
    toast("Type your name first: it is recorded with your answer.");
    input.focus();
  }
  return name;
}

async function post(action, body) {
  const response = await fetch("/api/" + action, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Dropsite-Token": TOKEN},
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) {
    toast("Not done: " + (reply.error || response.status));
    return false;
  }
  drafts.delete(body.task_id);
  toast(action === "answer" ? "Answer sent" : action === "retry" ? "Back in the inbox" : "Unblocked");
  refresh();
  return true;
}

// -- cards ----------------------------------------------------------------------
function header(task, kind) {
  return [
    el("div", {class: "kind"}, kind),
    el("h3", {}, el("button", {class: "linklike", type: "button", title: "timeline",
      onclick: () => showTimeline(task.id)}, task.title)),
    el("div", {class: "muted"}, `from ${task.created_by} · ${task.assigned_to ? "for " +
      task.assigned_to + " · " : ""}updated ${when(task.updated_at)} · ${task.id}`),
  ];
}

function block(label, value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "object" && Object.keys(value).length === 0) return null;
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return el("div", {}, el("div", {class: "label"}, label), el("pre", {}, text));
}

function freeText(task, placeholder) {
  const input = el("input", {class: "free", id: "text-" + task.id, placeholder: placeholder,
    maxlength: "10000"});
  input.value = drafts.get(task.id) || "";
  input.addEventListener("input", () => drafts.set(task.id, input.value));
  return input;
}

function answerCard(task, folder) {
  const send = (answer) => {
    const by = person();
    if (by && answer.trim()) {
      post("answer", {task_id: task.id, answer: answer, by: by, folder: folder,
        agent: task.assigned_to});
    }
  };
  const input = freeText(task, "or write an answer");
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") send(input.value); });
  const options = (task.options || []).map((option) =>
    el("button", {class: "option", type: "button", onclick: () => send(option)}, option));
  const kind = folder === "feedback" ? "an agent asks" : `assigned to ${task.assigned_to}`;
  return el("article", {class: "card " + folder, "data-task-id": task.id},
    ...header(task, kind),
    folder === "feedback" ? block("Question", task.question) : block("Task", task.description),
    folder === "feedback" ? block("Draft", task.draft) : block("Context", task.context),
    folder === "feedback" ? block("Details", task.details) : null,
    el("div", {class: "actions"}, ...options, input,
      el("button", {type: "button", onclick: () => send(input.value)}, "Send")));
}

function blockedCard(task) {
  const note = freeText(task, "note for the history (optional)");
  return el("article", {class: "card blocked", "data-task-id": task.id},
    ...header(task, "blocked"),
    block("Reason", task.reason),
    el("div", {class: "actions"}, note, el("button", {class: "primary", type: "button",
      onclick: () => {
        const by = person();
        if (by) post("unblock", {task_id: task.id, by: by, note: note.value || null});
      }}, "Unblock")));
}

function failedCard(task) {
  const retries = task.history.filter((e) => e.status === "retry").length;
  return el("article", {class: "card failed compact", "data-task-id": task.id},
    el("div", {class: "row"},
      el("button", {class: "linklike", type: "button", title: "timeline",
        onclick: () => showTimeline(task.id)}, task.title),
      el("span", {class: "muted"}, `${when(task.updated_at)} · ${retries} retries · ${task.id}`),
      el("button", {class: "primary", type: "button", onclick: () => {
        const by = person();
        if (by) post("retry", {task_id: task.id, by: by});
      }}, "Retry")),
    el("div", {class: "text error"}, task.error || "(no error recorded)"));
}

function fill(containerId, nodes, emptyText) {
  const box = document.getElementById(containerId);
  box.replaceChildren(...(nodes.length ? nodes : [el("p", {class: "empty"}, emptyText)]));
}

// -- queues, chart, agents -------------------------------------------------------
function drawQueues(queues) {
  fill("queues", Object.entries(queues).map(([name, count]) =>
    el("span", {class: "badge", "data-queue": name}, name + " ", el("b", {}, count))), "no folders");
}

function drawChart(chart) {
  const box = document.getElementById("chart");
  const width = Math.max(360, box.clientWidth || 720), height = 160, left = 34, bottom = 20,
    top = 8;
  const plotW = width - left - 8, plotH = height - bottom - top;
  const start = chart.now - 3600;
  const x = (t) => left + Math.max(0, Math.min(1, (t - start) / 3600)) * plotW;
  const peakBars = Math.max(1, ...chart.throughput.map((b) => b.done + b.failed));
  const peakLine = Math.max(1, ...chart.depth.map((d) => Math.max(d.inbox, d.active, d.waiting)));
  const root = svg("svg", {viewBox: `0 0 ${width} ${height}`, width: width, height: height, role: "img",
    "aria-label": "queue depth and throughput over the last hour"});
  root.append(svg("line", {x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH,
    stroke: "#d8dde6"}));
  for (const bucket of chart.throughput) {
    const barW = plotW / 60 - 1;
    let y = top + plotH;
    for (const [key, color] of [["done", "#9fd3b4"], ["failed", "#e8a29b"]]) {
      const h = (bucket[key] / peakBars) * plotH;
      if (h > 0) {
        y -= h;
        root.append(svg("rect", {x: x(bucket.t), y: y, width: barW, height: h, fill: color},
          undefined));
      }
    }
  }
  for (const [key, color] of [["inbox", "#2f5bd3"], ["active", "#b7791f"], ["waiting", "#8e44ad"]]) {
    const points = chart.depth.map((d) => `${x(d.t)},${top + plotH - (d[key] / peakLine) * plotH}`);
    if (points.length > 1) {
      root.append(svg("polyline", {points: points.join(" "), fill: "none", stroke: color,
        "stroke-width": 2}));
    }
  }
  root.append(svg("text", {x: left, y: height - 4}, "-60 min"),
    svg("text", {x: left + plotW / 2 - 16, y: height - 4}, "-30 min"),
    svg("text", {x: left + plotW - 22, y: height - 4}, "now"),
    svg("text", {x: 0, y: top + 8}, String(peakLine)));
  const legend = el("p", {class: "legend muted"}, `Lines: tasks in inbox (blue), active ` +
    `(amber), waiting for people (purple), up to ${peakLine}, sampled while this page server ` +
    `runs. Bars: tasks done (green) and failed (red) per minute, up to ${peakBars}.`);
  box.replaceChildren(root, legend);
}

function drawAgents(agents) {
  const rows = agents.map((a) => el("tr", {"data-agent": a.name},
    el("td", {}, a.name), el("td", {}, a.mode || "-"),
    el("td", {class: "state-" + (a.state || "")}, a.state || "-"),
    el("td", {}, (a.pids || []).join(" ") || "-"), el("td", {}, a.restarts ?? 0),
    el("td", {}, a.tasks_done ?? 0), el("td", {}, a.tasks_failed ?? 0),
    el("td", {}, a.last_error || "")));
  const body = document.querySelector("#agents tbody");
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: "8",
    class: "empty"}, "no agents registered in agents/"))]));
}

// -- timeline ----------------------------------------------------------------------
async function showTimeline(taskId) {
  const response = await fetch("/api/task/" + encodeURIComponent(taskId));
  const reply = await response.json();
  if (!response.ok) { toast(reply.error || "cannot read the task"); return; }
  const task = reply.task;
  document.getElementById("timeline-title").textContent = task.title;
  document.getElementById("timeline-meta").textContent =
    `${task.id} · in ${reply.folder}/ · attempts ${task.retry_count}/${task.max_retries}`;
  document.getElementById("timeline-list").replaceChildren(...task.history.map((entry) => {
    const details = Object.entries(entry).filter(([k]) => k !== "status" && k !== "at")
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("  ");
    return el("li", {}, el("span", {class: "status"}, entry.status), " ",
      el("span", {class: "muted"}, when(entry.at)), details ? el("div", {class: "text"}, details) : null);
  }));
  document.getElementById("timeline").hidden = false;
}

// -- the whole page ------------------------------------------------------------------
function render(state) {
  const focused = document.activeElement && document.activeElement.id;
  document.getElementById("workspace").textContent = state.workspace;
  const daemon = document.getElementById("daemon");
  daemon.textContent = state.daemon.running ? `daemon pid ${state.daemon.pid}` : "no daemon";
  daemon.classList.toggle("off", !state.daemon.running);
  const w = state.waiting;
  const cards = [...w.feedback.map((t) => answerCard(t, "feedback")),
    ...w.assigned.map((t) => answerCard(t, "inbox")), ...w.blocked.map(blockedCard)];
  document.getElementById("waiting-count").textContent = `(${cards.length})`;
  fill("waiting", cards, "Nothing waits for a person.");
  document.getElementById("failed-count").textContent = `(${state.queues.failed})`;
  fill("failed", state.failed.map(failedCard), "No failed tasks.");
  drawQueues(state.queues);
  drawChart(state.chart);
  drawAgents(state.agents);
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const response = await fetch("/api/state");
      if (response.ok) render(await response.json());
      else toast("cannot read the workspace: " + response.status);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function live() {
  const badge = document.getElementById("live");
  const events = new EventSource("/events");
  events.addEventListener("change", () => refresh());
  events.onopen = () => { badge.textContent = "live"; badge.classList.remove("off"); };
  events.onerror = () => { badge.textContent = "reconnecting"; badge.classList.add("off"); };
}

document.addEventListener("DOMContentLoaded", () => {
  const name = document.getElementById("person");
  name.value = localStorage.getItem("dropsite-person") || "";
  name.addEventListener("input", () => localStorage.setItem("dropsite-person", name.value));
  document.getElementById("close-timeline").addEventListener("click", () => {
    document.getElementById("timeline").hidden = true;
  });
  if (location.search.includes("token=")) history.replaceState(null, "", "/");
  refresh();
  live();
});
