// starstream status page: polls api/status every 2 s and renders the DAG.
// Every value is set with textContent: error texts come from the service.
'use strict';

const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';
let lastOK = 0;
let lastEdges = [];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function num(n) { return Number(n || 0).toLocaleString('en-US'); }

function rate(r) { return (r < 10 ? Number(r || 0).toFixed(1) : Math.round(r).toLocaleString('en-US')) + '/s'; }

function age(sec) {
  if (sec === null || sec === undefined) return '—';
  if (sec < 1) return 'now';
  if (sec < 60) return Math.round(sec) + 's';
  if (sec < 3600) return Math.floor(sec / 60) + 'm ' + Math.round(sec % 60) + 's';
  if (sec < 86400) return Math.floor(sec / 3600) + 'h ' + Math.round((sec % 3600) / 60) + 'm';
  return Math.floor(sec / 86400) + 'd ' + Math.round((sec % 86400) / 3600) + 'h';
}

const INFINITE_LSN = 'FFFFFFFF/FFFFFFFF';

function lsn(n) {
  if (!n.watermark) return 'none yet';
  return n.watermark_lsn === INFINITE_LSN ? '∞ (static)' : n.watermark_lsn;
}

function field(dl, label, value, cls) {
  dl.append(el('dt', '', label));
  const dd = el('dd', cls || '', value);
  dl.append(dd);
  return dd;
}

function nodeCard(n) {
  const card = el('div', 'node state-' + n.state);
  card.dataset.node = n.name;
  const head = el('div', 'node-head');
  head.append(el('span', 'node-name', n.name), el('span', 'state', n.state));
  card.append(head);
  if (n.external) {
    card.append(el('p', 'state', 'runs in another process'));
    return card;
  }
  const dl = el('dl');
  field(dl, 'watermark', lsn(n), 'wm');
  field(dl, 'age', age(n.watermark_age_seconds), 'wm-age');
  field(dl, 'lag', num(n.lag_records) + ' rec · ' + age(n.lag_seconds), 'lag');
  field(dl, 'throughput', rate(n.throughput_per_second), 'tput');
  field(dl, 'DQ failures', num(n.dq_failures), 'dq');
  field(dl, 'dead letters', num(n.dead_letter), 'dlq');
  card.append(dl);
  if (n.last_error) {
    const p = el('p', 'error', n.last_error);
    p.title = n.last_error;
    card.append(p);
  }
  return card;
}

function renderDAG(s) {
  const columns = document.getElementById('columns');
  const byLevel = [];
  for (const n of s.pipelines) {
    (byLevel[n.level] = byLevel[n.level] || []).push(n);
  }
  const frag = document.createDocumentFragment();
  for (const nodes of byLevel) {
    if (!nodes) continue;
    const col = el('div', 'column');
    for (const n of nodes) col.append(nodeCard(n));
    frag.append(col);
  }
  columns.replaceChildren(frag);
  lastEdges = s.edges;
  drawEdges();
}

function drawEdges() {
  const dag = document.getElementById('dag');
  const svg = document.getElementById('edges');
  const base = dag.getBoundingClientRect();
  svg.setAttribute('width', dag.scrollWidth);
  svg.setAttribute('height', dag.scrollHeight);
  const defs = document.createElementNS(SVG, 'defs');
  const marker = document.createElementNS(SVG, 'marker');
  marker.setAttribute('id', 'arrow');
  marker.setAttribute('viewBox', '0 0 10 10');
  marker.setAttribute('refX', '10');
  marker.setAttribute('refY', '5');
  marker.setAttribute('markerWidth', '7');
  marker.setAttribute('markerHeight', '7');
  marker.setAttribute('orient', 'auto-start-reverse');
  const tip = document.createElementNS(SVG, 'path');
  tip.setAttribute('d', 'M 0 0 L 10 5 L 0 10 z');
  tip.setAttribute('fill', '#98a2b3');
  marker.append(tip);
  defs.append(marker);
  const parts = [defs];
  for (const [from, to] of lastEdges) {
    const a = dag.querySelector('[data-node="' + CSS.escape(from) + '"]');
    const b = dag.querySelector('[data-node="' + CSS.escape(to) + '"]');
    if (!a || !b) continue;
    const ra = a.getBoundingClientRect();
    const rb = b.getBoundingClientRect();
    const x1 = ra.right - base.left + dag.scrollLeft;
    const y1 = ra.top + ra.height / 2 - base.top;
    const x2 = rb.left - base.left + dag.scrollLeft;
    const y2 = rb.top + rb.height / 2 - base.top;
    // An edge that skips columns runs level with its source through them (where
    // the columns' centred nodes leave room) and bends only in the last gap.
    const gap = Math.min(56, x2 - x1);
    const bend = x2 - gap;
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', `M ${x1} ${y1} L ${bend} ${y1} C ${bend + gap / 2} ${y1}, ${x2 - gap / 2} ${y2}, ${x2} ${y2}`);
    path.setAttribute('marker-end', 'url(#arrow)');
    path.dataset.edge = from + '→' + to;
    parts.push(path);
  }
  svg.replaceChildren(...parts);
}

function renderTable(s) {
  const body = document.querySelector('#details tbody');
  const rows = [];
  for (const n of s.pipelines) {
    if (n.external) continue;
    const tr = el('tr');
    const cells = [
      [n.name], [n.state], [lsn(n)], [age(n.watermark_age_seconds), 'num'],
      [num(n.lag_records), 'num'], [age(n.lag_seconds), 'num'], [rate(n.throughput_per_second), 'num'],
      [num(n.processed), 'num'], [num(n.dead_letter), 'num'], [num(n.dq_failures), 'num'], [n.last_error || '', 'err'],
    ];
    for (const [text, cls] of cells) tr.append(el('td', cls || '', text));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderCapture(c) {
  const sec = document.getElementById('capture');
  sec.hidden = !c;
  if (!c) return;
  const dl = document.getElementById('capture-fields');
  const items = [
    ['slot', c.slot], ['publication', c.publication], ['source', c.dsn], ['events written', num(c.events)],
    ['confirmed LSN', c.confirmed_lsn], ['slot lag', num(c.slot_lag_bytes) + ' bytes · ' + age(c.slot_lag_seconds)],
  ];
  dl.replaceChildren(...items.map(([k, v]) => {
    const d = el('div');
    d.append(el('dt', '', k), el('dd', '', v || '—'));
    return d;
  }));
  const err = document.getElementById('capture-error');
  err.hidden = !c.last_error;
  err.textContent = c.last_error || '';
}

function render(s) {
  const ready = document.getElementById('ready');
  ready.textContent = s.ready ? 'ready' : 'not ready';
  ready.className = 'badge ' + (s.ready ? 'ready' : 'not-ready');
  const reasons = document.getElementById('reasons');
  reasons.hidden = s.reasons.length === 0;
  const ul = el('ul');
  for (const r of s.reasons) ul.append(el('li', '', r));
  reasons.replaceChildren(ul);
  renderCapture(s.capture);
  renderDAG(s);
  renderTable(s);
  document.body.dataset.generatedAt = s.generated_at;
}

function showConnection() {
  const conn = document.getElementById('conn');
  const since = (Date.now() - lastOK) / 1000;
  if (lastOK && since < 3 * POLL_MS / 1000) {
    conn.className = 'conn';
    conn.textContent = 'live · updated ' + age(since) + (since < 1 ? '' : ' ago');
  } else {
    conn.className = 'conn lost';
    conn.textContent = lastOK ? 'connection lost ' + age(since) + ' ago · retrying' : 'connecting…';
  }
}

async function poll() {
  try {
    const res = await fetch('api/status', { cache: 'no-store' });
    if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
    render(await res.json());
    lastOK = Date.now();
  } catch (e) {
    // keep the last figures on screen; showConnection says they are stale
  } finally {
    showConnection();
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener('resize', drawEdges);
setInterval(showConnection, 1000);
poll();
