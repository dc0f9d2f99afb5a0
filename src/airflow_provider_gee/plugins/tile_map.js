"use strict";
// Everything comes from Airflow's REST API, with the user's session; nothing from the internet.
// Every value shown comes from people who may not be the one looking (DAG params, EE's messages,
// files in a shared folder), so the page is built from elements and text nodes only (never
// innerHTML), links open only https: or this server's own URLs, and the server forbids inline
// script (Content-Security-Policy), so nothing a value holds can run here.
const STATES = {
  waiting: "#bdbdbd", in_ee: "#42a5f5", retrying: "#ffb300", exported: "#9ccc65",
  harvested: "#2e7d32", failed: "#c62828",
};
const LABELS = {
  waiting: "waiting", in_ee: "in EE", retrying: "retrying", exported: "exported",
  harvested: "harvested", failed: "failed",
};
const TILING = ["GridTilesOperator", "ChunkPointsOperator"];
const EXPORT = ["GeeExportOperator"];
const HARVEST = ["GeeHarvestOperator", "DriveHarvestOperator"];
const DONE_RUN = ["success", "failed"];
const params = new URLSearchParams(location.search);
const dagId = params.get("dag_id"), runId = params.get("run_id");
// the page is <base>/gee-tile-map/: Airflow's API is <base>/api/v2/
const API = location.pathname.replace(/gee-tile-map\/?.*$/, "") + "api/v2/";
const results = {};  // "task|map_index" -> XCom value (kept once the task succeeded)
// ?tile=<id> opens the page with that tile's details (a link to one tile)
let tiles = null, selected = params.get("tile"), view = null, latest = null;

async function get(path) {
  const response = await fetch(API + path, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}
const enc = encodeURIComponent;

// an element with attributes and children (strings become text nodes)
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children.map((c) => (typeof c === "string" ? document.createTextNode(c) : c)));
  return node;
}

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

// a link URL only if it is https: or this server's own (http: on it too); anything else
// (javascript:, data:, another http: host) is shown as text
function safeUrl(url) {
  try {
    const u = new URL(String(url), location.href);
    if (u.protocol === "https:" || u.origin === location.origin) return u.href;
  } catch (e) { /* not a URL */ }
  return null;
}
const runPath = () => `dags/${enc(dagId)}/dagRuns/${enc(runId)}`;
const asValue = (v) => (typeof v === "string" && /^[\[{]/.test(v) ? JSON.parse(v) : v);

async function taskInstances() {
  const all = [];
  for (let offset = 0; ; offset += 100) {
    const page = await get(`${runPath()}/taskInstances?limit=100&offset=${offset}`);
    all.push(...page.task_instances);
    if (all.length >= page.total_entries || page.task_instances.length === 0) return all;
  }
}

async function xcom(ti) {
  const key = `${ti.task_id}|${ti.map_index}`;
  if (key in results) return results[key];
  const q = ti.map_index >= 0 ? `&map_index=${ti.map_index}` : "";
  const entry = await get(`${runPath()}/taskInstances/${enc(ti.task_id)}/xcomEntries/return_value?deserialize=true${q}`);
  const value = asValue(entry.value);
  if (ti.state === "success") results[key] = value;  // a finished task's result no longer changes
  return value;
}

const PROGRESS = /\b(?:PENDING|RUNNING)\s+(\d{1,3})%/g;

async function progress(ti) {
  const q = ti.map_index >= 0 ? `&map_index=${ti.map_index}` : "";
  const log = await get(`${runPath()}/taskInstances/${enc(ti.task_id)}/logs/${ti.try_number}?full_content=true${q}`);
  const lines = Array.isArray(log.content) ? log.content.map((l) => (typeof l === "string" ? l : l.event || ""))
                                           : String(log.content || "").split("\n");
  let last = null;
  for (const line of lines) for (const m of line.matchAll(PROGRESS)) last = Number(m[1]);
  return last;
}

function tileState(exp, harvest) {
  if (harvest && harvest.state === "success") return "harvested";
  if ([exp, harvest].some((t) => t && ["failed", "upstream_failed"].includes(t.state))) return "failed";
  if (exp && exp.state === "success") return "exported";
  if (exp && exp.state === "up_for_retry") return "retrying";
  if (exp && ["deferred", "running", "restarting", "up_for_reschedule"].includes(exp.state)) return "in_ee";
  return "waiting";
}

function byTile(tis, operators) {
  const out = {};
  for (const ti of tis.filter((t) => operators.includes(t.operator))) {
    const id = ti.rendered_map_index || (tiles[ti.map_index] || {}).tile_id;
    if (id) out[id] = ti;
  }
  return out;
}

async function refresh() {
  const run = await get(runPath());
  const tis = await taskInstances();
  if (tiles === null) {
    const tiling = tis.find((t) => TILING.includes(t.operator) && t.state === "success");
    if (!tiling) { status(`${run.state}: the tiles are not made yet`); return run.state; }
    tiles = asValue(await xcom(tiling)).map(expandTile);
    view = projection(tiles);
  }
  const exports = byTile(tis, EXPORT), harvests = byTile(tis, HARVEST);
  const rows = tiles.map((tile) => {
    const exp = exports[tile.tile_id], harvest = harvests[tile.tile_id];
    return {tile, exp, harvest, state: tileState(exp, harvest)};
  });
  // in EE: the progress the export's trigger last logged (Airflow's log API; EE is not asked)
  await Promise.all(rows.filter((r) => r.state === "in_ee").map(async (r) => {
    try { r.progress = await progress(r.exp); } catch (e) { r.progress = null; }
  }));
  // split tiles: a successful export's result lists its parts (read once, then kept)
  await Promise.all(rows.filter((r) => r.exp && r.exp.state === "success").map(async (r) => {
    try { r.result = await xcom(r.exp); } catch (e) { r.result = null; }
  }));
  latest = {run, rows};
  draw(rows);
  legend(rows, run);
  if (selected) await details(rows.find((r) => r.tile.tile_id === selected));
  return run.state;
}

function status(text) { document.getElementById("status").textContent = text; }

function legend(rows, run) {
  const counts = {};
  for (const r of rows) counts[r.state] = (counts[r.state] || 0) + 1;
  const split = rows.filter((r) => r.result && r.result.parts).length;
  const box = document.getElementById("legend");
  box.replaceChildren();
  for (const state of Object.keys(STATES)) {
    const swatch = el("i");
    swatch.style.background = STATES[state];  // CSSOM, which the page's CSP allows (a style attribute it would not)
    const span = el("span", {}, swatch, `${LABELS[state]} (`, el("b", {}, String(counts[state] || 0)), ")");
    span.dataset.state = state;
    span.dataset.count = counts[state] || 0;
    box.appendChild(span);
  }
  const s = el("span", {}, el("i", {class: "split"}), "split (", el("b", {}, String(split)), ")");
  s.dataset.state = "split";
  s.dataset.count = split;
  box.appendChild(s);
  document.getElementById("title").textContent = `${dagId} / ${runId}: ${rows.length} tiles`;
  status(`run ${run.state}; updated ${new Date().toLocaleTimeString()}`
         + (DONE_RUN.includes(run.state) ? "" : " (refreshing every 5 s)"));
  document.body.dataset.runState = run.state;
  document.body.dataset.tiles = rows.length;
}

function projection(tiles) {
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const t of tiles) {
    w = Math.min(w, t.bbox[0]); s = Math.min(s, t.bbox[1]); e = Math.max(e, t.bbox[2]); n = Math.max(n, t.bbox[3]);
  }
  const svg = document.getElementById("map");
  const W = svg.width.baseVal.value, H = svg.height.baseVal.value, pad = 40;
  const k = Math.cos(((s + n) / 2) * Math.PI / 180);  // a degree of longitude is shorter than one of latitude
  const scale = Math.min((W - 2 * pad) / Math.max((e - w) * k, 1e-9), (H - 2 * pad) / Math.max(n - s, 1e-9));
  const ox = (W - 2 * pad - (e - w) * k * scale) / 2, oy = (H - 2 * pad - (n - s) * scale) / 2;  // centred
  return {w, s, e, n, x: (lon) => pad + ox + (lon - w) * k * scale, y: (lat) => H - pad - oy - (lat - s) * scale};
}

function ringPath(ring) {
  return ring.map(([lon, lat], i) => `${i ? "L" : "M"}${view.x(lon).toFixed(1)},${view.y(lat).toFixed(1)}`).join("") + "Z";
}

// a compact tile (utils/compact_tiles.py) leaves out a geometry that is its cell's rectangle
// (its bbox's, without a cell) and a grid tile's cell equal to its bbox
function expandTile(t) {
  if (t.geometry || !t.bbox) return t;
  const [w, s, e, n] = t.cell || t.bbox;
  return {...t, geometry: {type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}};
}

function geometryPath(g) {
  const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
  return polygons.map((p) => p.map(ringPath).join("")).join("");
}

function draw(rows) {
  const svg = document.getElementById("map");
  const NS = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const axis = svgEl("g", {class: "axis"});
  for (let i = 0; i <= 4; i++) {  // coordinates along the edges instead of a basemap
    const lon = view.w + (view.e - view.w) * i / 4, lat = view.s + (view.n - view.s) * i / 4;
    axis.append(
      svgEl("line", {x1: view.x(lon), x2: view.x(lon), y1: 0, y2: "100%"}),
      svgEl("text", {x: view.x(lon), y: svg.height.baseVal.value - 8, "text-anchor": "middle"}, `${lon.toFixed(3)}°`),
      svgEl("line", {y1: view.y(lat), y2: view.y(lat), x1: 0, x2: "100%"}),
      svgEl("text", {x: 4, y: view.y(lat) - 3}, `${lat.toFixed(3)}°`));
  }
  svg.appendChild(axis);
  for (const r of rows) {
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", geometryPath(r.tile.geometry));
    path.setAttribute("fill", STATES[r.state]);
    path.setAttribute("class", "tile" + (r.tile.tile_id === selected ? " selected" : ""));
    path.dataset.tile = r.tile.tile_id;
    path.dataset.state = r.state;
    path.dataset.split = r.result && r.result.parts ? r.result.parts.length : 0;
    if (r.progress != null) path.dataset.progress = r.progress;
    const title = document.createElementNS(NS, "title");
    title.textContent = `${r.tile.tile_id}: ${LABELS[r.state]}` + (r.progress != null ? ` ${r.progress}%` : "");
    path.appendChild(title);
    path.addEventListener("click", () => { selected = r.tile.tile_id; draw(latest.rows); details(r); });
    svg.appendChild(path);
    const [w, s, e, n] = r.tile.bbox;
    const cx = view.x((w + e) / 2), cy = view.y((s + n) / 2);
    if (view.x(e) - view.x(w) > 80) {  // the tile's id where it fits
      const name = document.createElementNS(NS, "text");
      name.setAttribute("x", cx);
      name.setAttribute("y", cy - 6);
      name.setAttribute("text-anchor", "middle");
      name.setAttribute("class", "name");
      name.textContent = r.tile.tile_id;
      svg.appendChild(name);
    }
    if (r.progress != null) {  // how far EE is, on the tile itself
      const label = document.createElementNS(NS, "text");
      label.setAttribute("x", cx);
      label.setAttribute("y", cy + 12);
      label.setAttribute("text-anchor", "middle");
      label.setAttribute("class", "progress");
      label.textContent = `${r.progress}%`;
      svg.appendChild(label);
    }
    for (const part of (r.result && r.result.parts) || []) {
      if (!part.bbox) continue;
      const [w, s, e, n] = part.bbox;
      const outline = document.createElementNS(NS, "path");
      outline.setAttribute("d", ringPath([[w, s], [e, s], [e, n], [w, n]]));
      outline.setAttribute("class", "part");
      svg.appendChild(outline);
    }
  }
}

async function details(r) {
  const panel = document.getElementById("details");
  if (!r) return;
  const items = [["Tile", r.tile.tile_id], ["State", LABELS[r.state]],
                 ["Bounds", r.tile.bbox.map((v) => v.toFixed(4)).join(", ")]];
  if (r.exp) {
    items.push(["Export", `${r.exp.state || "none"}, try ${r.exp.try_number}`
                + (r.progress != null ? `, EE ${r.progress}% done` : "")]);
    try {
      const q = r.exp.map_index >= 0 ? `?map_index=${r.exp.map_index}` : "";
      const links = (await get(`${runPath()}/taskInstances/${enc(r.exp.task_id)}/links${q}`)).extra_links || {};
      for (const [name, url] of Object.entries(links)) {
        if (!url) continue;
        const href = safeUrl(url);
        items.push([name, href ? el("a", {href, target: "_blank", rel: "noopener noreferrer"}, String(url))
                               : `${url} (not opened: not an https: link)`]);
      }
    } catch (e) { /* links are optional */ }
  }
  if (r.result) {
    items.push(["EE task", String(r.result.operation || "")]);
    if (r.result.eecu_seconds != null) items.push(["EECU-seconds", Number(r.result.eecu_seconds).toFixed(3)]);
    if (r.result.error) items.push(["EE error", String(r.result.error)]);
    if (r.result.parts) items.push(["Split", `${r.result.parts.length} parts (${(r.result.split || {}).reason})`]);
  }
  if (r.harvest && r.harvest.state === "success") {
    try {
      const h = await xcom(r.harvest);
      items.push(["Files", `${h.file_count} (${Number(h.bytes).toLocaleString()} bytes) in ${h.destination}`]);
      const names = (h.files || []).slice(0, 20).map((f) => String(f.path || f.name || "").split("/").pop());
      if (names.length) items.push(["File names", names.join("\n")]);
    } catch (e) { /* harvest result not readable */ }
  }
  for (const ti of [r.exp, r.harvest]) {
    if (ti && ["failed", "upstream_failed", "up_for_retry"].includes(ti.state)) {
      const page = `${API.replace(/api\/v2\/$/, "")}dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(ti.task_id)}`
        + (ti.map_index >= 0 ? `/mapped/${ti.map_index}` : "");
      items.push(["Error", el("span", {}, `${ti.task_id} is ${ti.state}: `, el("a", {href: page, target: "_top"}, "its log"))]);
    }
  }
  const list = el("dl");
  for (const [k, v] of items) list.append(el("dt", {}, k), el("dd", {}, v));
  panel.replaceChildren(list);
  panel.dataset.tile = r.tile.tile_id;
}

async function loop() {
  let state = null;
  try {
    state = await refresh();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e);
  }
  if (!DONE_RUN.includes(state)) setTimeout(loop, 5000);
  else document.body.dataset.loaded = "true";
}

if (!dagId || !runId) {
  document.getElementById("error").textContent = "Open this page from a DAG run (the Tile map tab), or give ?dag_id=...&run_id=....";
} else {
  document.getElementById("title").textContent = `${dagId} / ${runId}`;
  loop();
}
