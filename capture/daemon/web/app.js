// calibd web view: live status over server-sent events (read with fetch, so the token can be
// sent), commands for a token holder, cooler history, coverage, masters, journal, report.
// Everything from the daemon is put into the page as text (no innerHTML), but the report's
// body, which the daemon renders escaped.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("calibd-token") || "";
tokenInput.addEventListener("change", () => {
  sessionStorage.setItem("calibd-token", tokenInput.value.trim());
});

function headers() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-") || key === "title" || key === "href" || key === "type") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function say(text) { $("message").textContent = text; }

async function getJSON(path) {
  const reply = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!reply.ok) throw new Error(path + ": HTTP " + reply.status);
  return reply.json();
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits) + (unit || "");
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

// ----- cameras ---------------------------------------------------------------------------------
async function command(camera, action) {
  try {
    const reply = await fetch(`/api/v1/cameras/${encodeURIComponent(camera)}/${action}`, {
      method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, headers()),
      body: "{}",
    });
    const body = await reply.json().catch(() => ({}));
    say(reply.ok ? body.message || `${action}: ok` : `${action} refused (HTTP ${reply.status}): ${body.error || ""}`);
  } catch (err) {
    say(`${action} failed: ${err.message}`);
  }
}

function cameraCard(name, cam) {
  const run = cam.run || {};
  const total = run.frames_total || 0, done = run.frames_done || 0;
  const kv = el("div", { class: "kv" },
    el("span", {}, "plan"), el("span", { class: "plan" }, cam.plan ? cam.plan.split("/").pop() : "–"),
    el("span", {}, "cell"), el("span", { class: "cell-name" }, run.cell ? `${run.cell} (${run.cell_done}/${run.cell_total})` : run.message || "–"),
    el("span", {}, "frames"), el("span", { class: "frames" }, total ? `${done}/${total}` : "–"),
    el("span", {}, "sensor"), el("span", { class: "temperature" }, `${fmt(run.temperature_c, 1, " °C")} (set ${fmt(run.setpoint_c, 0, " °C")})`),
    el("span", {}, "cooler"), el("span", { class: "power" }, fmt(run.power_pct, 0, " %")),
    el("span", {}, "ETA"), el("span", { class: "eta" }, duration(run.eta_s)));
  if (cam.reason) kv.append(el("span", {}, "reason"), el("span", { class: "reason" }, cam.reason));
  const buttons = el("div", { class: "buttons" });
  for (const action of ["pause", "resume", "stop"]) {
    buttons.append(el("button", { type: "button", "data-action": action, onclick: () => command(name, action) }, action));
  }
  return el("article", { class: "card", "data-camera": name },
    el("h3", {}, el("span", {}, name), el("span", { class: "state " + cam.state }, cam.state)),
    total ? el("progress", { max: total, value: done }) : null, kv, buttons);
}

function renderLive(data) {
  const d = data.daemon || {};
  $("daemon").textContent = `${d.healthy ? "healthy" : "unhealthy"} · ${d.now_utc ? d.now_utc.slice(0, 19).replace("T", " ") + " UTC" : ""}` +
    (d.weather ? ` · weather ${d.weather}` : "");
  const list = $("camera-list");
  list.replaceChildren(...Object.entries(data.cameras || {}).map(([name, cam]) => cameraCard(name, cam)));
}

async function liveLoop() {
  for (;;) {
    try {
      const reply = await fetch("/api/v1/live", { headers: headers(), cache: "no-store" });
      if (!reply.ok || !reply.body) throw new Error("HTTP " + reply.status);
      const reader = reply.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) renderLive(JSON.parse(data));
        }
      }
    } catch (err) {
      $("daemon").textContent = "reconnecting (" + err.message + ")";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// ----- cooler history ------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function coolerPlot(name, points) {
  const W = 320, H = 150, P = 28;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "history", role: "img", "aria-label": `${name} cooler history` });
  const times = points.map((p) => Date.parse(p.t));
  const temps = points.map((p) => p.temperature_c);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const lo = Math.floor(Math.min(...temps, ...points.map((p) => p.setpoint_c ?? temps[0])) - 1);
  const hi = Math.ceil(Math.max(...temps) + 1);
  const x = (t) => P + (W - 2 * P) * (t - t0) / (t1 - t0);
  const yT = (v) => H - P - (H - 2 * P) * (v - lo) / (hi - lo || 1);
  const yP = (v) => H - P - (H - 2 * P) * v / 100;
  box.append(svg("rect", { x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "none", stroke: "currentColor", "stroke-opacity": "0.3" }));
  const line = (ys, colour) => svg("polyline", { fill: "none", stroke: colour, "stroke-width": "1.5",
    points: points.map((p, i) => `${x(times[i]).toFixed(1)},${ys(p).toFixed(1)}`).join(" ") });
  box.append(line((p) => yT(p.temperature_c), "#0072B2"));
  box.append(line((p) => yP(p.power_pct ?? 0), "#D55E00"));
  const text = (tx, ty, s, anchor) => { const t = svg("text", { x: tx, y: ty, "font-size": "10", fill: "currentColor", "text-anchor": anchor || "start" }); t.textContent = s; return t; };
  box.append(text(2, P + 4, `${hi} °C`), text(2, H - P, `${lo} °C`), text(W - 2, P + 4, "100 %", "end"), text(W - 2, H - P, "0 %", "end"));
  box.append(text(P, H - 8, new Date(t0).toISOString().slice(11, 16)), text(W - P, H - 8, new Date(t1).toISOString().slice(11, 16) + " UTC", "end"));
  box.append(text(P + 4, 14, "sensor °C", "start"), text(W - P - 4, 14, "cooler %", "end"));
  box.lastChild.setAttribute("fill", "#D55E00");
  box.childNodes[box.childNodes.length - 2].setAttribute("fill", "#0072B2");
  return el("div", { class: "card", "data-history": name }, el("h3", {}, name), box);
}

async function refreshHistory() {
  const data = await getJSON("/api/v1/history");
  const plots = Object.entries(data).filter(([, pts]) => pts.length > 0).map(([name, pts]) => coolerPlot(name, pts));
  $("cooler-plots").replaceChildren(...(plots.length ? plots : [el("p", { class: "muted" }, "No cooler readings yet.")]));
}

// ----- schedules, goals ----------------------------------------------------------------------
function table(id, head, rows) {
  $(id).replaceChildren(el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c ?? "–"))))));
  // (a cell may be an element, e.g. a thumbnail: el() appends nodes as they are)
}

async function refreshStatus() {
  const data = await getJSON("/api/v1/status");
  table("schedule-table", ["schedule", "trigger", "camera", "next run (UTC)"],
    (data.schedules || []).map((s) => [s.name, s.trigger, s.camera, s.next_run_utc ? s.next_run_utc.slice(0, 16).replace("T", " ") : (s.enabled ? "–" : "disabled")]));
  const goals = (data.library && data.library.goals) || [];
  $("goals").replaceChildren(...goals.map((g) => el("p", {}, `Goal ${g.schedule}: ${g.lacking.length} cell(s) lacking; filled ${g.fills}`)));
}

// ----- library -------------------------------------------------------------------------------
const DAY = 86400e3;
function coverage(cells) {
  const groups = new Map();
  for (const c of cells) {
    const flat = c.kind === "flat" || c.kind === "darkflat";
    const key = `${c.camera} · ${c.kind} · ${c.setpoint_c} °C`;
    if (!groups.has(key)) groups.set(key, { flat, cells: [] });
    groups.get(key).cells.push(c);
  }
  const out = [];
  for (const [key, g] of groups) {
    const rowKey = (c) => g.flat ? `${c.filter || "–"}` : `gain ${c.gain}`;
    const colKey = (c) => g.flat ? `gain ${c.gain}` : (c.exposure_s ? `${c.exposure_s} s` : "bias");
    const rows = [...new Set(g.cells.map(rowKey))], cols = [...new Set(g.cells.map(colKey))];
    const latest = new Map();
    for (const c of g.cells) latest.set(rowKey(c) + "|" + colKey(c), c);
    const body = rows.map((r) => el("tr", {}, el("th", {}, r), ...cols.map((col) => {
      const c = latest.get(r + "|" + col);
      if (!c) return el("td", {});
      const old = c.updated && Date.now() - Date.parse(c.updated) > 30 * DAY ? " old" : "";
      return el("td", { class: `cell ${c.state}${old}`, title: `${c.state}, ${c.done}/${c.planned} frames, run ${c.run}` +
        (c.master ? `\nmaster ${c.master}` : "") + (c.reason ? `\n${c.reason}` : ""), "data-state": c.state }, `${c.done}/${c.planned}`);
    })));
    out.push(el("h3", {}, key), el("div", { class: "scroll" }, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, el("th", {}), ...cols.map((c) => el("th", {}, c)))), el("tbody", {}, ...body))));
  }
  $("coverage-grids").replaceChildren(...(out.length ? out : [el("p", { class: "muted" }, "No runs yet.")]));
}

const thumbs = new Map(); // master id -> object URL (fetched with the token, kept)
function thumbnail(m) {
  const img = el("img", { class: "thumb", alt: `${m.kind} master ${m.id}`, "data-master": m.id, width: 96 });
  if (thumbs.has(m.id)) { img.src = thumbs.get(m.id); return img; }
  fetch(`/api/v1/masters/${m.id}.png`, { headers: headers(), cache: "no-store" })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error("HTTP " + r.status))))
    .then((blob) => { const url = URL.createObjectURL(blob); thumbs.set(m.id, url); img.src = url; })
    .catch(() => { img.alt = "no image"; });
  return img;
}

async function refreshLibrary() {
  const data = await getJSON("/api/v1/library");
  coverage(data.cells || []);
  table("master-table", ["image", "kind", "camera", "gain", "set-point", "exposure", "filter", "frames", "built", "calibration", "file"],
    (data.masters || []).map((m) => [thumbnail(m), m.kind, m.camera, m.gain, m.setpoint_c, m.exposure_s, m.filter, m.frames, (m.created || "").slice(0, 16), m.calibration, m.path]));
  table("journal-table", ["time (UTC)", "run", "level", "event", "message"],
    (data.journal || []).map((e) => [(e.time || "").slice(0, 19).replace("T", " "), e.run, e.level, e.kind, e.message]));
}

async function loadReport() {
  $("report-body").textContent = "building the report…";
  try {
    const reply = await fetch("/api/v1/report", { headers: headers(), cache: "no-store" });
    if (!reply.ok) throw new Error("HTTP " + reply.status);
    $("report-body").innerHTML = await reply.text(); // rendered and escaped by the daemon
  } catch (err) {
    $("report-body").textContent = "the report failed: " + err.message;
  }
}
$("load-report").addEventListener("click", loadReport);

async function refreshAll() {
  for (const step of [refreshStatus, refreshHistory, refreshLibrary]) {
    try { await step(); } catch (err) { say(err.message); }
  }
}

liveLoop();
refreshAll();
setInterval(refreshAll, 15000);
