// duckpeer dashboard: read-only views of the local daemon, kept live by server-sent events.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { config: null, series: null, charts: {} };

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(Array.isArray(c) ? cell(c[0], c[1]) : cell(c)));
  return tr;
}

const short = (id) => (id ? id.slice(-10) : "");
const fixed = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : x);
const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

// -- overview: peers, convergence, conflicts ------------------------------------------

function showOverview(o) {
  $("#me").textContent = "peer " + short(o.peer_id);
  $("#cid").textContent = o.db_cid;
  const badge = $("#convergence");
  badge.textContent = o.converged ? "converged" : "syncing";
  badge.className = "badge" + (o.converged ? "" : " syncing");
  const body = $("#peers tbody");
  body.replaceChildren(
    ...o.peers.map((p) =>
      row([short(p.peer_id), p.connected ? "yes" : "no",
           p.db_cid === o.db_cid ? "same" : short(p.db_cid), [p.we_lack, "num"],
           [p.they_lack, "num"],
           p.last_seen ? new Date(p.last_seen * 1000).toLocaleTimeString() : ""]),
    ),
  );
  $("#rows").textContent = Object.entries(o.rows).map(([t, n]) => `${t}: ${n}`).join(" · ") +
    ` · changesets: ${o.changesets}`;
  const conflicts = $("#conflicts");
  conflicts.replaceChildren();
  if (!o.conflicts.length) conflicts.textContent = "none";
  o.conflicts.forEach((c) => {
    const p = document.createElement("p");
    p.textContent = `${c.table} ${c.key} (${c.id}): ` +
      c.versions.map((v) => `${short(v.origin)}@${v.hlc}`).join(" vs ");
    conflicts.appendChild(p);
  });
}

// -- recent results ---------------------------------------------------------------------

function resultRow(r, fresh) {
  const tr = row([when(r.created_at), r.model_id, r.hardware_id, [r.batch_size, "num"],
                  r.precision, [fixed(r.throughput), "num"], [fixed(r.latency_ms, 2), "num"]]);
  tr.dataset.resultId = r.result_id;
  if (fresh) tr.className = "fresh";
  return tr;
}

function asObject(columns, values) {
  const out = {};
  columns.forEach((c, i) => { out[c] = values[i]; });
  return out;
}

function showRecent(columns, rows) {
  $("#recent tbody").replaceChildren(...rows.map((v) => resultRow(asObject(columns, v), false)));
}

function addResult(columns, values) {
  const r = asObject(columns, values);
  const body = $("#recent tbody");
  body.insertBefore(resultRow(r, true), body.firstChild);
  while (body.children.length > 50) body.removeChild(body.lastChild);
  if (state.config && r.model_id === state.config[0] && r.hardware_id === state.config[1]) {
    loadSeries();  // the chart of this configuration gains a point
  }
}

// -- charts -------------------------------------------------------------------------------

async function loadConfigs() {
  const configs = await getJSON("/api/configs");
  const select = $("#config");
  const previous = select.value;
  select.replaceChildren(
    ...configs.rows.map(([model, hw, n]) => {
      const o = document.createElement("option");
      o.value = JSON.stringify([model, hw]);
      o.textContent = `${model} on ${hw} (${n})`;
      return o;
    }),
  );
  if (previous) select.value = previous;
  if (select.value) {
    state.config = JSON.parse(select.value);
    await loadSeries();
  }
}

function chart(id, title, label, times, values, flagged, color) {
  const target = document.getElementById(id);
  const width = Math.max(400, target.clientWidth || 560);
  const marks = values.map((v, i) => (flagged[i] ? v : null));
  const opts = {
    title, width, height: 220,
    scales: { x: { time: true } },
    series: [
      {},
      { label, stroke: color, width: 2, points: { show: true, size: 5 } },
      { label: "regression", stroke: "#c62828", width: 0, points: { show: true, size: 11,
        fill: "#c62828" } },
    ],
  };
  if (state.charts[id]) state.charts[id].destroy();
  target.replaceChildren();
  state.charts[id] = new uPlot(opts, [times, values, marks], target);
}

async function loadSeries() {
  if (!state.config) return;
  const [model, hw] = state.config;
  const s = await getJSON(`/api/series?model=${encodeURIComponent(model)}` +
                          `&hardware=${encodeURIComponent(hw)}`);
  const times = s.rows.map((r) => r[0] / 1000);
  const ids = s.rows.map((r) => r[3]);
  const throughput = s.rows.map((r) => r[1]);
  const latency = s.rows.map((r) => r[2]);
  const flagged = ids.map((id) => id in s.regressions);
  chart("throughput-chart", `${model} on ${hw}: throughput`, "items/s", times, throughput,
        flagged, "#1565c0");
  chart("latency-chart", `${model} on ${hw}: latency`, "ms", times, latency, flagged, "#6a1b9a");
  const n = flagged.filter(Boolean).length;
  $("#regression-note").textContent = n ? `${n} regression(s) marked in red` : "no regressions";
}

// -- knowledge graph ------------------------------------------------------------------------

async function loadSimilar(node) {
  const body = $("#similar tbody");
  try {
    const found = await getJSON(`/api/similar?node=${encodeURIComponent(node)}`);
    body.replaceChildren(...found.matches.map((m) =>
      row([m.node, [fixed(m.similarity, 3), "num"]])));
  } catch (err) {
    body.replaceChildren(row([err.message, ""]));
  }
}

async function loadCompat() {
  const rows = await getJSON("/api/compat");
  const models = [...new Set(rows.map((r) => r.model_id))].sort();
  const hardware = [...new Set(rows.map((r) => r.hardware_id))].sort();
  const grid = document.createElement("div");
  grid.className = "compat";
  grid.style.gridTemplateColumns = `repeat(${hardware.length + 1}, minmax(6em, 1fr))`;
  const add = (text, cls) => {
    const d = document.createElement("div");
    d.textContent = text;
    d.className = cls;
    grid.appendChild(d);
  };
  const status = new Map(rows.map((r) => [`${r.model_id}\u0000${r.hardware_id}`, r]));
  add("", "head");
  hardware.forEach((h) => add(h, "head"));
  models.forEach((m) => {
    add(m, "head");
    hardware.forEach((h) => {
      const r = status.get(`${m}\u0000${h}`);
      add(r ? r.status : "", r ? r.status : "unknown");
    });
  });
  $("#compat").replaceChildren(grid);
}

// -- live -----------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/api/events");
  const live = $("#live");
  source.onopen = () => { live.textContent = "live"; live.className = "badge"; };
  source.onerror = () => { live.textContent = "live: reconnecting"; live.className = "badge off"; };
  source.addEventListener("overview", (e) => showOverview(JSON.parse(e.data)));
  source.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    showRecent(s.columns, s.rows);
    state.recentColumns = s.columns;
  });
  source.addEventListener("result", (e) => {
    const event = JSON.parse(e.data);
    if (state.recentColumns) addResult(state.recentColumns, event.row);
  });
}

async function main() {
  $("#config").addEventListener("change", (e) => {
    state.config = JSON.parse(e.target.value);
    loadSeries();
  });
  $("#similar-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadSimilar($("#similar-node").value);
  });
  connect();
  await loadConfigs();
  await loadCompat().catch(() => {});
  if (state.config) {
    $("#similar-node").value = state.config[0];
    await loadSimilar(state.config[0]);
  }
  document.body.dataset.ready = "1";  // for tests: first render done
}

main();
