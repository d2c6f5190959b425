// QueryCraft's web page: ask a question, see the SQL (highlighted, editable), the rows, a chart
// and the answer. Plain JS, nothing from the network. Everything that comes from the server or
// the database is put on the page with textContent, never parsed as HTML.
"use strict";

const KEY_STORE = "querycraft.apiKey";
const HISTORY_STORE = "querycraft.history";
const HISTORY_MAX = 50;
const CHART_MAX_BARS = 50;

const $ = (id) => document.getElementById(id);
const el = {
  form: $("ask-form"), question: $("question"), ask: $("ask"),
  dbPicker: $("db-picker"), dbId: $("db-id"),
  keyForm: $("api-key-form"), apiKey: $("api-key"),
  error: $("error"), status: $("status"),
  output: $("output"), shownQuestion: $("shown-question"), answer: $("answer"),
  sql: $("sql"), sqlEditor: $("sql-editor"), sqlHint: $("sql-editor-hint"),
  editSql: $("edit-sql"), runSql: $("run-sql"),
  rowCount: $("row-count"), truncated: $("truncated"), result: $("result"),
  chartBox: $("chart-box"), chart: $("chart"), chartCaption: $("chart-caption"),
  timings: $("timings"), downloadCsv: $("download-csv"),
  history: $("history"), historyEmpty: $("history-empty"), clearHistory: $("clear-history"),
};

let current = null;       // the response shown now
let busy = false;
let retryAfterKey = null; // the request a 401 stopped, run again once a key is saved
let databasesLoaded = false;

// ------------------------------------------------------------------ the API

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function storageGet(key) {
  try { return sessionStorage.getItem(key); } catch { return null; }
}

function storageSet(key, value) {
  try { sessionStorage.setItem(key, value); return true; } catch { return false; }
}

// Calls a /v1 endpoint; resolves to the JSON body, or rejects with an ApiError whose message
// is fit to show (the server's error.message, or what went wrong on the way).
async function api(path, body) {
  const headers = { Accept: "application/json" };
  const key = storageGet(KEY_STORE);
  if (key) headers.Authorization = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method: body === undefined ? "GET" : "POST", headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("Could not reach the QueryCraft server. Is it running? Check the " +
                       "connection and try again.", 0);
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: handled below */ }
  if (!response.ok) {
    const message = data && data.error && typeof data.error.message === "string"
      ? data.error.message
      : `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".";
    throw new ApiError(message, response.status);
  }
  if (data === null || typeof data !== "object") {
    throw new ApiError("The server's answer was not the JSON this page expects.", response.status);
  }
  el.keyForm.hidden = true;  // the key (if one is needed) works: its field is done
  return data;
}

// A 401: show the key field; `retry` (if any) runs once a key is saved.
function needKey(err, retry) {
  if (!(err instanceof ApiError) || err.status !== 401) return false;
  if (retry) retryAfterKey = retry;
  showKeyField(true);
  return true;
}

function showKeyField(focus) {
  el.keyForm.hidden = false;
  el.apiKey.value = storageGet(KEY_STORE) || "";
  if (focus) el.apiKey.focus();
}

// ------------------------------------------------------------------ asking

function setBusy(on, label) {
  busy = on;
  el.ask.disabled = on;
  el.runSql.disabled = on;
  el.ask.textContent = on ? "Thinking…" : "Ask";
  el.output.setAttribute("aria-busy", String(on));
  el.status.textContent = on ? label : "";
}

function showError(message) {
  el.error.textContent = message;
  el.error.hidden = !message;
}

function selectedDb() {
  return el.dbPicker.hidden || !el.dbId.value ? undefined : el.dbId.value;
}

// Sends one request (ask or run SQL), shows its result and records it in the history.
async function submit(path, payload, busyLabel) {
  if (busy) return;
  showError("");
  setBusy(true, busyLabel);
  try {
    const data = await api(path, payload);
    render(data);
    addToHistory(data, path === "/v1/sql" ? "sql" : "ask");
    setBusy(false);   // (the answer itself is announced: #answer is a live region)
  } catch (err) {
    setBusy(false);
    needKey(err, () => submit(path, payload, busyLabel));
    showError(err.message || String(err));
  }
}

function askQuestion() {
  const question = el.question.value.trim();
  if (!question) {
    showError("Type a question first.");
    el.question.focus();
    return;
  }
  const payload = { question };
  const db = selectedDb();
  if (db) payload.db_id = db;
  submit("/v1/ask", payload, "Thinking…");
}

function runSql() {
  const sql = (el.sqlEditor.hidden ? (current && current.sql) : el.sqlEditor.value) || "";
  if (!sql.trim()) {
    setEditing(true);
    showError("Write the SQL to run first.");
    return;
  }
  const payload = { sql, question: (current && current.question) || "" };
  const db = (current && current.db_id) || selectedDb();
  if (db) payload.db_id = db;
  submit("/v1/sql", payload, "Running the SQL…");
}

// ------------------------------------------------------------------ showing a result

function render(data) {
  current = data;
  el.output.hidden = false;
  setEditing(false);

  const question = typeof data.question === "string" ? data.question : "";
  el.shownQuestion.textContent = question;
  el.shownQuestion.hidden = !question;

  const answered = data.status === "answered";
  el.answer.textContent = data.answer || (answered ? "" : "I don't know: " + (data.reason || data.status) + ".");
  el.answer.className = answered ? "answer" : "answer notice";
  if (!answered && data.status) {
    const badge = document.createElement("span");
    badge.className = "badge status-" + String(data.status).replace(/[^a-z_]/g, "");
    badge.textContent = String(data.status).replace(/_/g, " ");
    el.answer.prepend(badge, " ");
  }

  highlightSql(data.sql || "");
  el.editSql.textContent = data.sql ? "Edit SQL" : "Write SQL";

  const columns = Array.isArray(data.columns) ? data.columns : [];
  const rows = Array.isArray(data.rows) ? data.rows : [];
  renderTable(columns, rows);
  $("rows-panel").hidden = !columns.length;   // no SQL run: no rows to show
  const n = rows.length;
  el.rowCount.textContent = columns.length ? `(${n} row${n === 1 ? "" : "s"})` : "";
  el.truncated.hidden = !data.truncated;
  el.downloadCsv.disabled = !columns.length;
  renderChart(columns, rows);

  const t = data.timings || {};
  const parts = [];
  if (typeof t.generate_s === "number") parts.push(`generate ${t.generate_s.toFixed(2)} s`);
  if (typeof t.total_s === "number") parts.push(`total ${t.total_s.toFixed(2)} s`);
  if (data.db_id) parts.push(`database ${data.db_id}`);
  el.timings.textContent = parts.join(" · ");
}

// A tiny SQL tokenizer, enough for colour: each token becomes a text node or a <span> whose
// text is set with textContent, so nothing in the SQL is ever read as HTML.
const SQL_KEYWORDS = new Set((
  "select from where and or not in is null like ilike between exists as on join inner left " +
  "right full outer cross natural using group by order having limit offset fetch first next " +
  "rows only distinct all union intersect except case when then else end asc desc nulls " +
  "with recursive insert into values update set delete create table view index drop alter " +
  "primary key foreign references default count sum avg min max cast coalesce true false " +
  "over partition window filter top collate escape glob regexp any some lateral"
).split(" "));
const SQL_TOKEN = new RegExp([
  "(--[^\\n]*|/\\*[\\s\\S]*?(?:\\*/|$))",          // 1 comment
  "('(?:[^']|'')*'?)",                              // 2 string
  "(\"(?:[^\"]|\"\")*\"?|`[^`]*`?|\\[[^\\]]*\\]?)", // 3 quoted identifier
  "(\\b\\d+(?:\\.\\d*)?(?:e[+-]?\\d+)?\\b|\\.\\d+\\b)", // 4 number
  "([A-Za-z_][A-Za-z0-9_$]*)",                      // 5 word
  "(\\s+)",                                         // 6 space
  "([\\s\\S])",                                     // 7 anything else (operators)
].join("|"), "giy");

function highlightSql(sql) {
  const code = el.sql.querySelector("code");
  code.replaceChildren();
  if (!sql) {
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "(no SQL)";
    code.append(none);
    return;
  }
  const frag = document.createDocumentFragment();
  SQL_TOKEN.lastIndex = 0;
  let m;
  while ((m = SQL_TOKEN.exec(sql)) !== null) {
    let cls = "";
    if (m[1]) cls = "tok-comment";
    else if (m[2]) cls = "tok-string";
    else if (m[3]) cls = "tok-ident";
    else if (m[4]) cls = "tok-number";
    else if (m[5]) cls = SQL_KEYWORDS.has(m[5].toLowerCase()) ? "tok-keyword" : "tok-ident";
    else if (m[7]) cls = "tok-op";
    if (cls) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = m[0];
      frag.append(span);
    } else {
      frag.append(document.createTextNode(m[0]));
    }
  }
  code.append(frag);
}

function setEditing(on) {
  el.sqlEditor.hidden = !on;
  el.sqlHint.hidden = !on;
  el.sql.hidden = on;
  el.editSql.setAttribute("aria-pressed", String(on));
  if (on) {
    el.editSql.textContent = "Cancel edit";
    el.sqlEditor.value = (current && current.sql) || "";
    el.sqlEditor.focus();
  } else {
    el.editSql.textContent = current && current.sql ? "Edit SQL" : "Write SQL";
  }
}

function cellText(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function renderTable(columns, rows) {
  const head = document.createElement("tr");
  columns.forEach((name, i) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = String(name);
    // A column of numbers (NULLs aside) is right-aligned, its heading too.
    const values = rows.map((r) => (Array.isArray(r) ? r[i] : null)).filter((v) => v != null);
    if (values.length && values.every((v) => typeof v === "number")) th.className = "num";
    head.append(th);
  });
  el.result.tHead.replaceChildren(columns.length ? head : "");
  const body = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (let i = 0; i < columns.length; i++) {
      const td = document.createElement("td");
      const value = Array.isArray(row) ? row[i] : undefined;
      const text = cellText(value);
      if (text === null) {
        td.className = "null";
        td.textContent = "NULL";
      } else {
        td.textContent = text;
        if (typeof value === "number") td.className = "num";
        if (text.length <= 32) td.classList.add("short");   // short values do not wrap
      }
      tr.append(td);
    }
    body.append(tr);
  }
  el.result.tBodies[0].replaceChildren(body);
  el.result.hidden = !columns.length;
}

// ------------------------------------------------------------------ the chart

// A number, or null when `value` is not one (numbers and numeric strings both count).
function asNumber(value) {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && /^\s*-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value)) {
    return Number(value);
  }
  return null;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatNumber(n) {
  return Math.abs(n) >= 1e6 || (n !== 0 && Math.abs(n) < 1e-3)
    ? n.toExponential(2) : n.toLocaleString(undefined, { maximumFractionDigits: 3 });
}

// Draws a horizontal bar chart when the result is a simple series: two columns with the second
// numeric in every row (label, value), or one numeric column of two rows or more.
function renderChart(columns, rows) {
  el.chart.replaceChildren();
  el.chartBox.hidden = true;
  const ok = rows.length > 0 && rows.every(Array.isArray);
  let series = null;
  if (ok && columns.length === 2 && rows.every((r) => asNumber(r[1]) !== null)) {
    series = rows.map((r) => ({ label: cellText(r[0]) ?? "NULL", value: asNumber(r[1]) }));
  } else if (ok && columns.length === 1 && rows.length >= 2 &&
             rows.every((r) => asNumber(r[0]) !== null)) {
    series = rows.map((r, i) => ({ label: "#" + (i + 1), value: asNumber(r[0]) }));
  }
  if (!series) return;
  const shown = series.slice(0, CHART_MAX_BARS);

  const width = 760, labelW = 180, valueW = 90, barH = 20, gap = 6, top = 8;
  const height = top * 2 + shown.length * (barH + gap);
  const lo = Math.min(0, ...shown.map((d) => d.value));
  const hi = Math.max(0, ...shown.map((d) => d.value));
  const span = hi - lo || 1;
  const plotW = width - labelW - valueW;
  const x = (v) => labelW + ((v - lo) / span) * plotW;

  el.chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  el.chart.setAttribute("preserveAspectRatio", "xMinYMin meet");
  shown.forEach((d, i) => {
    const y = top + i * (barH + gap);
    const g = svg("g", { class: "bar" });
    g.append(svg("title", {}, `${d.label}: ${formatNumber(d.value)}`));
    const label = d.label.length > 26 ? d.label.slice(0, 25) + "…" : d.label;
    g.append(svg("text", { x: labelW - 8, y: y + barH / 2, class: "bar-label",
                           "text-anchor": "end", "dominant-baseline": "central" }, label));
    const x0 = x(Math.min(0, d.value)), x1 = x(Math.max(0, d.value));
    g.append(svg("rect", { x: x0, y, width: Math.max(1, x1 - x0), height: barH, rx: 3,
                           class: d.value < 0 ? "bar-rect negative" : "bar-rect" }));
    g.append(svg("text", { x: x1 + 6, y: y + barH / 2, class: "bar-value",
                           "dominant-baseline": "central" }, formatNumber(d.value)));
    el.chart.append(g);
  });
  el.chart.append(svg("line", { x1: x(0), x2: x(0), y1: 0, y2: height, class: "axis" }));

  const valueName = String(columns[columns.length - 1]);
  let caption = columns.length === 2
    ? `${valueName} by ${String(columns[0])}` : `${valueName}, row by row`;
  if (series.length > shown.length) {
    caption += ` — the first ${shown.length} of ${series.length} rows`;
  }
  el.chartCaption.textContent = caption;
  el.chartBox.hidden = false;
}

// ------------------------------------------------------------------ CSV

// One CSV field: formula-looking text gets a leading ' (so spreadsheets do not run it), and a
// field with a quote, comma or line break is quoted with its quotes doubled.
function csvField(value) {
  if (value === null || value === undefined) return "";
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  if (typeof value !== "number" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) || /^\s|\s$/.test(text)
    ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function downloadCsv() {
  if (!current || !Array.isArray(current.columns) || !current.columns.length) return;
  const lines = [current.columns.map(csvField).join(",")];
  for (const row of current.rows || []) {
    lines.push(current.columns.map((_, i) => csvField(Array.isArray(row) ? row[i] : null)).join(","));
  }
  // The BOM makes spreadsheet programs read the file as UTF-8.
  const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = "querycraft-" + new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-") + ".csv";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ------------------------------------------------------------------ history

function loadHistory() {
  try {
    const list = JSON.parse(storageGet(HISTORY_STORE) || "[]");
    return Array.isArray(list) ? list.filter((h) => h && h.response) : [];
  } catch {
    return [];
  }
}

function saveHistory(list) {
  // When the tab's storage is full, the oldest entries go until the rest fits.
  while (list.length && !storageSet(HISTORY_STORE, JSON.stringify(list))) list.pop();
}

function addToHistory(response, kind) {
  const list = loadHistory();
  const id = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  list.unshift({ id, kind, time: new Date().toISOString(), response });
  list.length = Math.min(list.length, HISTORY_MAX);
  saveHistory(list);
  renderHistory(id);
}

function renderHistory(activeId) {
  const list = loadHistory();
  const frag = document.createDocumentFragment();
  for (const item of list) {
    const r = item.response;
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-item";
    button.dataset.id = item.id;
    if (item.id === activeId) button.setAttribute("aria-current", "true");
    const text = document.createElement("span");
    text.className = "history-text";
    text.textContent = (item.kind === "sql" ? "SQL: " : "") +
      ((item.kind === "sql" ? r.sql : r.question) || r.question || r.sql || "(empty)");
    const badge = document.createElement("span");
    badge.className = "badge status-" + String(r.status || "").replace(/[^a-z_]/g, "");
    badge.textContent = String(r.status || "?").replace(/_/g, " ");
    button.append(text, badge);
    li.append(button);
    frag.append(li);
  }
  el.history.replaceChildren(frag);
  el.historyEmpty.hidden = list.length > 0;
  el.clearHistory.disabled = list.length === 0;
}

// ------------------------------------------------------------------ start

async function loadDatabases() {
  let data;
  try {
    data = await api("/v1/databases");
  } catch (err) {
    if (!needKey(err)) showError("Could not list the databases: " + err.message);
    return;
  }
  databasesLoaded = true;
  const ids = Array.isArray(data.db_ids) ? data.db_ids.filter((d) => typeof d === "string") : [];
  el.dbId.replaceChildren(...ids.map((id) => new Option(id, id, false, id === data.default)));
  el.dbPicker.hidden = ids.length <= 1;
}

el.form.addEventListener("submit", (e) => { e.preventDefault(); askQuestion(); });
el.question.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    askQuestion();
  }
});
el.editSql.addEventListener("click", () => setEditing(el.sqlEditor.hidden));
el.runSql.addEventListener("click", runSql);
el.sqlEditor.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runSql(); }
  if (e.key === "Escape") { setEditing(false); el.editSql.focus(); }
});
el.downloadCsv.addEventListener("click", downloadCsv);
el.keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const key = el.apiKey.value.trim();
  if (!key || !storageSet(KEY_STORE, key)) {
    showError(key ? "Could not keep the key in this tab's storage." : "Enter the API key.");
    return;
  }
  showError("");
  el.status.textContent = "API key saved.";
  const retry = retryAfterKey;
  retryAfterKey = null;
  if (!databasesLoaded) loadDatabases();
  if (retry) retry();
});
el.history.addEventListener("click", (e) => {
  const button = e.target.closest(".history-item");
  if (!button) return;
  const item = loadHistory().find((h) => h.id === button.dataset.id);
  if (!item) return;
  showError("");
  render(item.response);
  renderHistory(item.id);
  el.status.textContent = "Showing an earlier result.";
});
el.clearHistory.addEventListener("click", () => {
  saveHistory([]);
  try { sessionStorage.removeItem(HISTORY_STORE); } catch { /* nothing kept */ }
  renderHistory();
});

if (storageGet(KEY_STORE)) showKeyField(false);
renderHistory();
loadDatabases();
