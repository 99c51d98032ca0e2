// posd fleet console: counts, call list and every box, live from /api/events.
// Every value shown comes from boxes over the broker and is untrusted: it only ever reaches
// the page as text (textContent), never as HTML.
"use strict";

const ROW_H = 28;          // px, as #box-rows tr.row in console.css
const OVERSCAN = 15;       // rows rendered above and below the visible ones
const REFRESH_MS = 250;    // live changes are redrawn at most this often

const boxes = new Map();   // terminal_id -> row of /api/boxes
const calls = new Map();   // id -> call of /api/calls
let view = [];             // terminal ids passing the filters, in display order
let viewDirty = true;
let refreshTimer = null;
let sseTouched = null;     // rows updated by the stream while a full load is in flight
const $ = (id) => document.getElementById(id);

const STATUS = { online: "온라인 Online", offline: "오프라인 Offline", stale: "응답 없음 Stale" };
const KIND = { missed_order: "놓친 주문 Missed order", deaf: "주문 알림 불가 Deaf" };
const RANK = { offline: 0, stale: 2, online: 4 };

function token() { return sessionStorage.getItem("posd-fleet-token"); }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({ cache: "no-store" }, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) { askToken(); throw new Error("unauthorized"); }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.status);
  return body;
}

function askToken() { $("token-form").hidden = false; $("token").focus(); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  const p = (n) => String(n).padStart(2, "0");
  return `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function ago(ts) {
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}분 전 (${Math.floor(s / 60)} min)`;
  if (s < 86400) return `${Math.floor(s / 3600)}시간 전 (${Math.floor(s / 3600)} h)`;
  return `${Math.floor(s / 86400)}일 전 (${Math.floor(s / 86400)} d)`;
}

// -- counts ---------------------------------------------------------------------------------

function showSummary(s) {
  for (const key of ["offline", "deaf", "missed_uncalled", "saf_old", "readers_disconnected"]) {
    $("n-" + key).textContent = String(s[key]);
    $("n-" + key).parentElement.classList.toggle("alarm", s[key] > 0);
  }
  $("totals").textContent =
    `전체 ${s.boxes}대 (Boxes) · 온라인 ${s.online} (Online) · 응답 없음 ${s.stale} (Stale)` +
    ` · 기준 ${when(s.as_of)} (As of)`;
}

function showConsole(c) {
  const link = $("link");
  link.className = "link " + (c.broker.up ? "up" : "down");
  link.textContent = c.broker.up
    ? "브로커 연결됨 Broker connected"
    : `브로커 끊김 Broker down since ${when(c.broker.since)}` +
      (c.broker.detail ? ` — ${c.broker.detail}` : "");
}

// -- calls ----------------------------------------------------------------------------------

// Rows are kept and moved as little as possible: an agent may be typing a note in one.
const callRows = new Map();  // id -> {tr, ago, called}

function renderCalls() {
  const tbody = $("call-rows");
  const list = [...calls.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id - b.id));
  const wanted = new Set(list.map((call) => call.id));
  for (const [id, kept] of callRows) {
    if (!wanted.has(id)) { kept.tr.remove(); callRows.delete(id); }
  }
  let cursor = tbody.firstChild;
  for (const call of list) {
    let kept = callRows.get(call.id);
    if (kept && kept.called !== call.called) {
      if (kept.tr === cursor) cursor = cursor.nextSibling;
      kept.tr.remove();
      kept = undefined;
    }
    if (!kept) { kept = callRow(call); callRows.set(call.id, kept); }
    kept.ago.textContent = ago(call.at);
    if (kept.tr === cursor) cursor = cursor.nextSibling;
    else tbody.insertBefore(kept.tr, cursor);
  }
  $("calls-empty").hidden = list.length > 0;
}

function callRow(call) {
  const tr = el("tr", null, call.called ? "called" : "");
  tr.dataset.id = String(call.id);
  const agoCell = el("td", ago(call.at));
  tr.append(el("td", KIND[call.kind] || call.kind), el("td", call.merchant_id),
    el("td", call.terminal_id), el("td", call.order_id), el("td", when(call.at)), agoCell);
  const td = el("td");
  if (call.called) {
    td.append(el("span", `✔ ${when(call.called_at)} ${call.note || ""}`));
  } else {
    const note = el("input");
    note.placeholder = "메모 Note";
    note.maxLength = 1000;
    const button = el("button", "연락 완료 Called");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const done = await api(`/api/calls/${call.id}/called`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ note: note.value }),
        });
        calls.set(done.id, done);
        renderCalls();
      } catch (e) { button.disabled = false; alert("실패 Failed: " + e.message); }
    });
    td.append(note, button);
  }
  tr.append(td);
  return { tr, ago: agoCell, called: call.called };
}

// -- boxes ----------------------------------------------------------------------------------

function rank(row) {
  if (row.status === "offline") return 0;
  if (row.deaf) return 1;
  return RANK[row.status] - (row.card_reader === "disconnected" ? 1 : 0);
}

function computeView() {
  const status = $("f-status").value;
  const deafOnly = $("f-deaf").checked;
  const q = $("f-q").value.trim().toLowerCase();
  const out = [];
  for (const row of boxes.values()) {
    if (status && row.status !== status) continue;
    if (deafOnly && !row.deaf) continue;
    if (q && !(`${row.terminal_id} ${row.merchant_id || ""} ${row.version || ""}`
      .toLowerCase().includes(q))) continue;
    out.push(row);
  }
  out.sort((a, b) => rank(a) - rank(b) ||
    (a.terminal_id < b.terminal_id ? -1 : a.terminal_id > b.terminal_id ? 1 : 0));
  view = out.map((row) => row.terminal_id);
  $("shown").textContent = `${boxes.size}대 중 ${view.length}대 표시 (showing ${view.length} of ${boxes.size})`;
  viewDirty = false;
}

function boxRow(row) {
  const tr = el("tr", null, "row");
  tr.dataset.tid = row.terminal_id;
  const saf = row.saf_pending ? `${row.saf_pending} (${Math.round((row.saf_oldest_age_s || 0) / 3600)} h)` : "0";
  const cells = [
    el("td", row.terminal_id), el("td", row.merchant_id),
    el("td", null), el("td", when(row.since)),
    el("td", row.deaf ? `불가 Deaf: ${row.deaf_reason || ""}` : "정상 OK", row.deaf ? "bad" : ""),
    el("td", row.ledger_link, row.ledger_link === "down" ? "bad" : ""),
    el("td", row.card_reader, row.card_reader === "disconnected" ? "bad" : ""),
    el("td", saf, "num" + ((row.saf_oldest_age_s || 0) > 86400 ? " bad" : "")),
    el("td", row.orders_alerting, "num"), el("td", row.missed_today, "num"),
    el("td", row.version), el("td", when(row.last_state_ts)),
  ];
  cells[2].append(el("span", STATUS[row.status] || row.status, "st st-" + row.status));
  tr.append(...cells);
  return tr;
}

function spacer(rows) {
  const tr = el("tr", null, "spacer");
  const td = el("td");
  td.colSpan = 12;
  tr.style.height = `${rows * ROW_H}px`;
  tr.append(td);
  return tr;
}

// Only the rows in sight (and OVERSCAN around them) are in the DOM, whatever the fleet's size.
function renderBoxes() {
  if (viewDirty) computeView();
  const scroller = $("table-scroll");
  const visible = Math.ceil(scroller.clientHeight / ROW_H);
  // Clamped: after the view shrank, scrollTop may still point past its end.
  const first = Math.max(0, Math.min(Math.floor(scroller.scrollTop / ROW_H) - OVERSCAN,
    view.length - visible - OVERSCAN));
  const count = visible + 2 * OVERSCAN;
  const last = Math.min(view.length, first + count);
  const rows = [spacer(first)];
  for (let i = first; i < last; i++) rows.push(boxRow(boxes.get(view[i])));
  rows.push(spacer(view.length - last));
  $("box-rows").replaceChildren(...rows);
}

function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; renderBoxes(); }, REFRESH_MS);
}

// -- the box's detail -----------------------------------------------------------------------

async function openDetail(tid) {
  const box = await api(`/api/boxes/${encodeURIComponent(tid)}`);
  $("d-title").textContent = `${box.terminal_id} · ${box.merchant_id || ""} · ${STATUS[box.status] || box.status}`;
  $("d-state").textContent = JSON.stringify(box.state, null, 2);
  $("d-events").replaceChildren(...box.events.slice().reverse().map((e) => el("li", JSON.stringify(e))));
  $("d-result").hidden = true;
  const commands = $("d-commands");
  commands.replaceChildren();
  for (const [command, label] of [["chime_test", "차임 시험 Chime test"],
    ["diagnostics", "진단 Diagnostics"], ["saf_flush", "미전송 전송 SAF flush"],
    ["reload_config", "설정 다시 읽기 Reload config"]]) {
    const button = el("button", label);
    button.addEventListener("click", () => sendCommand(box.terminal_id, command));
    commands.append(button);
  }
  $("detail").showModal();
}

async function sendCommand(tid, command) {
  const out = $("d-result");
  out.hidden = false;
  out.textContent = `${command}: 보내는 중… sending…`;
  try {
    const answer = await api(`/api/boxes/${encodeURIComponent(tid)}/commands/${command}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ args: {} }),
    });
    out.textContent = `${command}: ${JSON.stringify(answer, null, 2)}`;
  } catch (e) { out.textContent = `${command}: 실패 failed: ${e.message}`; }
}

// -- loading and the live stream ------------------------------------------------------------

async function loadAll() {
  sseTouched = new Set();
  const [summary, callList, rows] = await Promise.all(
    [api("/api/summary"), api("/api/calls"), api("/api/boxes")]);
  showSummary(summary);
  calls.clear();
  for (const call of callList) calls.set(call.id, call);
  renderCalls();
  const fresh = new Map();
  for (const row of rows) fresh.set(row.terminal_id, sseTouched.has(row.terminal_id) ? boxes.get(row.terminal_id) : row);
  for (const tid of sseTouched) if (boxes.has(tid)) fresh.set(tid, boxes.get(tid));
  boxes.clear();
  for (const [tid, row] of fresh) if (row) boxes.set(tid, row);
  sseTouched = null;
  viewDirty = true;
  renderBoxes();
}

function onEvent(name, data) {
  if (name === "box") {
    boxes.set(data.terminal_id, data);
    if (sseTouched) sseTouched.add(data.terminal_id);
    viewDirty = true;
    scheduleRefresh();
  } else if (name === "box_removed") {
    boxes.delete(data.terminal_id);
    if (sseTouched) sseTouched.add(data.terminal_id);
    viewDirty = true;
    scheduleRefresh();
  } else if (name === "summary") {
    showSummary(data);
  } else if (name === "call") {
    calls.set(data.id, data);
    renderCalls();
  } else if (name === "console") {
    showConsole(data);
  }
}

function onBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
    else if (line === ": connected") loadAll().catch(() => {});
  }
  if (!data.length) return;
  try { onEvent(name, JSON.parse(data.join("\n"))); }
  catch (e) { console.error(`event ${name}:`, e); }  // one bad event must not end the stream
}

// fetch() rather than EventSource, which cannot send the Authorization header.
async function stream() {
  for (;;) {
    try {
      const response = await fetch("/api/events", { headers: headers(), cache: "no-store" });
      if (response.status === 401) { askToken(); return; }
      if (!response.ok) throw new Error(String(response.status));
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) { console.error("event stream:", e); }
    showConsole({ broker: { up: false, since: new Date().toISOString(), detail: "콘솔 연결 끊김 console unreachable" } });
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["f-status", "f-deaf", "f-q"]) {
    $(id).addEventListener("input", () => { viewDirty = true; renderBoxes(); });
  }
  $("table-scroll").addEventListener("scroll", () => requestAnimationFrame(renderBoxes), { passive: true });
  window.addEventListener("resize", () => renderBoxes());
  $("box-rows").addEventListener("click", (event) => {
    const tr = event.target.closest("tr.row");
    if (tr) openDetail(tr.dataset.tid).catch((e) => alert(e.message));
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("posd-fleet-token", $("token").value.trim());
    $("token-form").hidden = true;
    stream();
  });
  setInterval(renderCalls, 30000);  // "how long ago" moves on
  stream();
});
