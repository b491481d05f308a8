// The capture page: the list, live updates, search, the message view. No build step.
// Message content is only ever written with textContent, or shown in the sandboxed
// iframe (no allow-scripts) that the server serves under its own strict CSP.
"use strict";

const API = "/api/v1";
const PAGE_SIZE = 50;
const state = { offset: 0, total: 0, query: "", selected: null };

const $ = (selector) => document.querySelector(selector);

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function formatSize(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / 1024 / 1024).toFixed(1) + " MiB";
}

function shortTime(iso) {
  const when = new Date(iso);
  const today = new Date().toDateString() === when.toDateString();
  return today ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

async function getJSON(url, options) {
  const reply = await fetch(url, options);
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}

async function loadList() {
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset, q: state.query });
  const page = await getJSON(`${API}/messages?${params}`);
  state.total = page.total;
  const body = $("#messages tbody");
  body.replaceChildren();
  for (const message of page.messages) {
    const row = body.insertRow();
    row.dataset.id = message.id;
    if (message.id === state.selected) row.classList.add("selected");
    cell(row, message.from);
    cell(row, message.to);
    cell(row, message.subject || "(no subject)", "subject");
    cell(row, formatSize(message.size), "num");
    cell(row, shortTime(message.time), "time").title = new Date(message.time).toLocaleString();
    row.addEventListener("click", () => openMessage(message.id));
  }
  $("#empty").hidden = page.messages.length > 0;
  const last = Math.min(state.offset + page.messages.length, page.total);
  $("#count").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "";
  $("#newer").disabled = state.offset === 0;
  $("#older").disabled = last >= page.total;
  if (state.selected && !page.messages.some((m) => m.id === state.selected)) {
    await checkSelected();
  }
}

async function checkSelected() {
  const reply = await fetch(`${API}/messages/${encodeURIComponent(state.selected)}`);
  if (reply.status === 404) closeMessage();
}

function closeMessage() {
  state.selected = null;
  $("#view").hidden = true;
  $("#placeholder").hidden = false;
  $("#html-frame").removeAttribute("src");
}

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  if (name === "raw" && state.selected) loadRaw(state.selected);
}

async function loadRaw(id) {
  const reply = await fetch(`${API}/messages/${encodeURIComponent(id)}/raw`);
  $("#raw-body").textContent = await reply.text();
}

function fillSummary(message) {
  const list = $("#view-summary");
  list.replaceChildren();
  const rows = [["From", message.from], ["To", message.to], ["Envelope from", message.mail_from],
    ["Envelope to", message.rcpt_tos.join(", ")], ["Received", new Date(message.time).toLocaleString()],
    ["Size", formatSize(message.size)]];
  for (const [name, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
}

function fillAttachments(message) {
  const list = $("#attachments");
  list.replaceChildren();
  const base = `${API}/messages/${encodeURIComponent(message.id)}/attachments/`;
  for (const item of message.attachments) {
    const link = document.createElement("a");
    link.className = "attachment";
    link.href = base + item.index;
    link.download = item.filename || `attachment-${item.index}`;
    link.textContent = `${item.filename || "(unnamed)"} — ${item.content_type}, ${formatSize(item.size)}`;
    const entry = document.createElement("li");
    entry.append(link);
    list.append(entry);
  }
}

function fillHeaders(message) {
  const body = $("#headers tbody");
  body.replaceChildren();
  for (const [name, value] of message.headers) {
    const row = body.insertRow();
    cell(row, name, "name");
    cell(row, value);
  }
}

async function openMessage(id) {
  const message = await getJSON(`${API}/messages/${encodeURIComponent(id)}`);
  state.selected = id;
  for (const row of document.querySelectorAll("#messages tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  $("#view").hidden = false;
  $("#placeholder").hidden = true;
  $("#view-subject").textContent = message.subject || "(no subject)";
  fillSummary(message);
  fillAttachments(message);
  fillHeaders(message);
  $("#text-body").textContent = message.text ?? "(no text part)";
  $("#raw-body").textContent = "";
  $("#release-result").textContent = "";
  const frame = $("#html-frame");
  const hasHtml = message.html !== null;
  $('#tabs button[data-tab="html"]').disabled = !hasHtml;
  if (hasHtml) frame.src = `${API}/messages/${encodeURIComponent(id)}/html`;
  else frame.removeAttribute("src");
  showTab(hasHtml ? "html" : "text");
}

async function deleteSelected() {
  if (!state.selected) return;
  await fetch(`${API}/messages/${encodeURIComponent(state.selected)}`, { method: "DELETE" });
  closeMessage();
  await loadList();
}

async function deleteAll() {
  if (!window.confirm("Delete every captured message?")) return;
  await fetch(`${API}/messages`, { method: "DELETE" });
  closeMessage();
  state.offset = 0;
  await loadList();
}

async function loadTargets() {
  const { targets } = await getJSON(`${API}/release-targets`);
  const select = $("#release-to");
  for (const target of targets) select.add(new Option(`to ${target}`, target));
  $("#release").hidden = targets.length === 0;
}

async function releaseSelected(event) {
  event.preventDefault();
  const result = $("#release-result");
  const url = `${API}/messages/${encodeURIComponent(state.selected)}/release`;
  try {
    const body = JSON.stringify({ to: $("#release-to").value });
    const done = await getJSON(url, { method: "POST", body, headers: { "Content-Type": "application/json" } });
    result.textContent = `Released to ${done.to}`;
  } catch (error) {
    result.textContent = `Not released: ${error.message}`;
  }
}

function listen() {
  const events = new EventSource(`${API}/events`);
  events.addEventListener("ready", () => { $("#live").textContent = "live"; $("#live").classList.add("on"); });
  events.addEventListener("change", () => loadList());
  events.addEventListener("error", () => { $("#live").textContent = "reconnecting…"; $("#live").classList.remove("on"); });
}

function start() {
  let timer = null;
  $("#search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.query = event.target.value; state.offset = 0; loadList(); }, 200);
  });
  $("#newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadList(); });
  $("#older").addEventListener("click", () => { state.offset += PAGE_SIZE; loadList(); });
  $("#delete").addEventListener("click", deleteSelected);
  $("#release").addEventListener("submit", releaseSelected);
  $("#delete-all").addEventListener("click", deleteAll);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  listen();
  loadList();
  loadTargets();
}

document.addEventListener("DOMContentLoaded", start);
