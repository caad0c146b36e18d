// OrderShop console: totals, tables and projections from the gateway's JSON API, and the live
// event feed read from GET /events/stream. Plain DOM; every text goes in through textContent.
'use strict';

(() => {
  const KINDS = ['customer', 'product', 'inventory', 'order', 'billing'];
  const TABLE_ROWS = 100;
  const FEED_ITEMS = 200;
  const REFRESH_DELAY_MS = 300;
  const REFRESH_EVERY_MS = 5000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const TOKEN_KEY = 'ordershop-token';

  // The totals cards: a main figure and smaller ones under it, each a field of `totals`.
  const CARDS = [
    { label: 'customers', total: 'customers', more: [['active_customers', 'active']] },
    { label: 'products', total: 'products', more: [['units_in_stock', 'units in stock']] },
    { label: 'orders', total: 'orders', more: [['billed_orders', 'billed'], ['unbilled_orders', 'unbilled']] },
    { label: 'billings', total: 'billings' },
    { label: 'amount ordered', total: 'amount_ordered' },
    { label: 'amount billed', total: 'amount_billed' },
    { label: 'amount unbilled', total: 'amount_unbilled' },
  ];
  const MONEY_TOTALS = new Set(['amount_ordered', 'amount_billed', 'amount_unbilled']);

  const $ = (id) => document.getElementById(id);
  const tokenRequired =
    document.querySelector('meta[name="ordershop-token-required"]')?.content.trim() === 'true';

  // ---- small helpers -------------------------------------------------------------------------

  // Children as nodes: nested arrays flattened, null and false dropped, strings as text (never markup).
  const nodes = (children) =>
    children
      .flat(Infinity)
      .filter((c) => c != null && c !== false)
      .map((c) => (c instanceof Node ? c : String(c)));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (name === 'class') node.className = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    node.append(...nodes(children));
    return node;
  }

  const fill = (node, ...children) => node.replaceChildren(...nodes(children));

  const short = (id) => (id ? String(id).slice(0, 8) : '—');
  const count = (n) => (n == null ? '—' : String(n));
  const plural = (n, word) => `${n} ${word}${Number(n) === 1 ? '' : 's'}`;

  // Minor units (number, or a string of digits for integers beyond 2^53) as `12.34`.
  function money(minor) {
    if (minor == null || minor === '') return '—';
    let n;
    try {
      n = BigInt(minor);
    } catch {
      return String(minor);
    }
    const sign = n < 0n ? '-' : '';
    if (n < 0n) n = -n;
    return `${sign}${n / 100n}.${String(n % 100n).padStart(2, '0')}`;
  }

  // The milliseconds part of an entry ID `<ms>-<seq>`.
  function entryMs(entryId) {
    const ms = Number(String(entryId ?? '').split('-')[0]);
    return Number.isFinite(ms) && ms > 0 ? ms : null;
  }

  function compareEntryIds(a, b) {
    const [am, as = '0'] = String(a).split('-');
    const [bm, bs = '0'] = String(b).split('-');
    try {
      const d = BigInt(am) - BigInt(bm) || BigInt(as) - BigInt(bs);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    } catch {
      return 1;
    }
  }

  function clock(ms) {
    const d = new Date(ms);
    const pad = (n, width = 2) => String(n).padStart(width, '0');
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - Number(ms)) / 1000));
    if (s < 90) return `${s} s ago`;
    const m = Math.round(s / 60);
    if (m < 90) return `${m} min ago`;
    const h = Math.round(m / 60);
    return h < 48 ? `${h} h ago` : `${Math.round(h / 24)} d ago`;
  }

  // A consumer whose heartbeat is older than three intervals is down (as `ordershop status`).
  const DOWN_AFTER_MS = 15000;

  const seconds = (ms) => (ms == null ? 'no heartbeat' : `${(Number(ms) / 1000).toFixed(1)} s`);

  // JSON.parse, except that integers beyond 2^53 stay exact as strings (money() takes both).
  const BIG_INTEGER_OR_STRING = /"(?:[^"\\]|\\.)*"|(?<![\d.eE+-])-?\d{16,}(?![\d.eE])/g;
  function parseJson(text) {
    return JSON.parse(
      text.replace(BIG_INTEGER_OR_STRING, (m) =>
        m[0] === '"' || Number.isSafeInteger(Number(m)) ? m : `"${m}"`,
      ),
    );
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Something in this file went wrong, not the shop: the one place that writes to the console.
  const bug = (error) => console.error('ordershop console:', error);

  // ---- token ---------------------------------------------------------------------------------

  const tokenStore = {
    get() {
      try {
        return sessionStorage.getItem(TOKEN_KEY) || null;
      } catch {
        return null;
      }
    },
    set(value) {
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch {
        // Storage refused (private mode): the token lives until the page is closed.
      }
    },
    clear() {
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        // Nothing stored.
      }
    },
  };
  let token = tokenStore.get();
  const needsToken = () => tokenRequired && !token;

  function askForToken(error = '') {
    $('token-form').hidden = false;
    $('token-error').textContent = error;
    $('token-forget').hidden = true;
    setFeedStatus('token');
  }

  // The gateway answered 401: the stored token is wrong (or the shop now requires one).
  function tokenRefused(detail) {
    token = null;
    tokenStore.clear();
    stopFeed();
    askForToken(detail || 'The token was refused.');
  }

  function saveToken(event) {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) {
      $('token-error').textContent = 'Enter the token first.';
      return;
    }
    token = value;
    tokenStore.set(value);
    $('token-input').value = '';
    $('token-error').textContent = '';
    $('token-form').hidden = true;
    $('token-forget').hidden = false;
    startFeed();
  }

  function forgetToken(event) {
    event.preventDefault();
    token = null;
    tokenStore.clear();
    stopFeed();
    if (tokenRequired) askForToken();
    else {
      $('token-forget').hidden = true;
      startFeed();
    }
  }

  // ---- API -----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // One request; resolves with the JSON body, rejects with an ApiError carrying the detail.
  async function api(path, method = 'GET') {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && token) headers.Authorization = `Bearer ${token}`;
    let response;
    let text;
    try {
      response = await fetch(path, { method, headers, cache: 'no-store' });
      text = await response.text();
    } catch (e) {
      throw new ApiError(0, `cannot reach the shop (${e.message})`);
    }
    let body = null;
    try {
      body = text ? parseJson(text) : null;
    } catch {
      if (response.ok) throw new ApiError(response.status, 'the answer is not JSON');
    }
    if (!response.ok) {
      const detail = body?.detail || body?.error || `HTTP ${response.status} ${response.statusText}`;
      throw new ApiError(response.status, String(detail).trim());
    }
    return body;
  }

  // ---- rendering -----------------------------------------------------------------------------

  // A short entity id that opens the entity's history.
  function entityLink(kind, id) {
    if (!id) return '—';
    return el(
      'button',
      { type: 'button', class: 'entity', 'data-entity': id, 'data-kind': kind, title: `${kind} ${id}` },
      short(id),
    );
  }

  function badge(text, tone) {
    return el('span', { class: `badge ${tone || ''}`.trim() }, text);
  }

  // columns: [{ label, cell: row => text or Node, class?: 'num' | 'nowrap' }]
  function table(columns, rows, rowAttrs) {
    const td = (column, row) => el('td', { class: column.class }, column.cell(row));
    return el(
      'table',
      {},
      el('thead', {}, el('tr', {}, columns.map((c) => el('th', { class: c.class }, c.label)))),
      el(
        'tbody',
        {},
        rows.map((row) => el('tr', rowAttrs ? rowAttrs(row) : {}, columns.map((c) => td(c, row)))),
      ),
    );
  }

  const lastRendered = new Map();

  // Fills `<name>-table` and `<name>-count`; skipped when the rows did not change.
  // `total`: how many there are in all, when the server sent only some of them.
  function renderList(name, rows, columns, { keepLast = false, empty = 'None yet.', rowAttrs, total } = {}) {
    const all = Array.isArray(rows) ? rows : [];
    const json = JSON.stringify([total, all]);
    if (lastRendered.get(name) === json) return;
    lastRendered.set(name, json);
    const shown = all.length <= TABLE_ROWS ? all : keepLast ? all.slice(-TABLE_ROWS) : all.slice(0, TABLE_ROWS);
    const count = Math.max(Number(total ?? 0), all.length);
    $(`${name}-count`).textContent =
      shown.length < count ? `showing ${shown.length} of ${count}` : String(count);
    fill(
      $(`${name}-table`),
      all.length ? table(columns, shown, rowAttrs) : el('p', { id: `${name}-empty`, class: 'empty' }, empty),
    );
  }

  const yesNo = (value, yes, no) => (value ? badge(yes, 'good') : badge(no, 'quiet'));

  const COLUMNS = {
    customers: [
      { label: 'customer', cell: (c) => entityLink('customer', c.id) },
      { label: 'name', cell: (c) => c.name },
      { label: 'email', cell: (c) => c.email },
      { label: 'status', cell: (c) => badge(c.status, c.status === 'active' ? 'good' : 'quiet') },
      { label: 'orders', cell: (c) => count(c.orders), class: 'num' },
      { label: 'ordered', cell: (c) => money(c.amount_ordered), class: 'num' },
      { label: 'billed', cell: (c) => money(c.amount_billed), class: 'num' },
      { label: 'unbilled', cell: (c) => money(c.amount_unbilled), class: 'num' },
      { label: 'messages', cell: (c) => count(c.messages_sent), class: 'num' },
    ],
    products: [
      { label: 'product', cell: (p) => entityLink('product', p.id) },
      { label: 'name', cell: (p) => p.name },
      { label: 'price', cell: (p) => money(p.price), class: 'num' },
      {
        label: 'stock',
        cell: (p) => (p.stock == null ? badge('no inventory', 'quiet') : count(p.stock)),
        class: 'num',
      },
    ],
    orders: [
      { label: 'order', cell: (o) => entityLink('order', o.id) },
      { label: 'customer', cell: (o) => [o.customer, ' ', entityLink('customer', o.customer_id)], class: 'nowrap' },
      { label: 'items', cell: (o) => count(o.items), class: 'num' },
      { label: 'total', cell: (o) => money(o.total), class: 'num' },
      { label: 'billed', cell: (o) => yesNo(o.billed, 'billed', 'unbilled') },
    ],
    billings: [
      { label: 'billing', cell: (b) => entityLink('billing', b.id) },
      { label: 'order', cell: (b) => entityLink('order', b.order_id) },
      { label: 'customer', cell: (b) => b.customer },
      { label: 'amount', cell: (b) => money(b.amount), class: 'num' },
      { label: 'done', cell: (b) => yesNo(b.done, 'done', 'open') },
    ],
    projections: [
      {
        label: 'group',
        cell: (p) =>
          p.down
            ? el('span', { title: 'no consumer has sent a heartbeat for three intervals' }, el('strong', {}, p.group), ' ', badge('down', 'bad'))
            : el('strong', {}, p.group),
      },
      { label: 'lag', cell: (p) => warnIfPositive(p.lag), class: 'num' },
      { label: 'pending', cell: (p) => warnIfPositive(p.pending), class: 'num' },
      {
        label: 'dead letters',
        cell: (p) =>
          el(
            'span',
            { title: `retried ${count(p.dead_letters_retried)}, discarded ${count(p.dead_letters_discarded)}` },
            Number(p.dead_lettered) > 0 ? badge(count(p.dead_lettered), 'bad') : count(p.dead_lettered),
          ),
        class: 'num',
      },
      {
        label: 'consumers (heartbeat)',
        cell: (p) =>
          (p.consumers ?? []).length
            ? p.consumers.map((c) =>
                el(
                  'div',
                  { class: 'consumer', title: `${c.pending} pending, idle ${seconds(c.idle_ms)}` },
                  c.name,
                  ' ',
                  c.heartbeat_age_ms == null || Number(c.heartbeat_age_ms) > DOWN_AFTER_MS
                    ? badge(c.heartbeat_age_ms == null ? 'no heartbeat' : `down ${seconds(c.heartbeat_age_ms)}`, 'bad')
                    : el('span', { class: 'muted' }, seconds(c.heartbeat_age_ms)),
                ),
              )
            : el('span', { class: 'muted' }, 'none'),
      },
      { label: 'paused', cell: (p) => (p.paused ? badge('paused', 'warn') : el('span', { class: 'muted' }, 'no')) },
      // Red while it still has parked entries to show for it; an old error is history.
      { label: 'last error', cell: (p) => lastError(p.last_error, Number(p.dead_lettered) > 0 || p.down) },
    ],
    deadLetters: [
      { label: 'projection', cell: (d) => d.projection },
      { label: 'id', cell: (d) => el('code', {}, d.id) },
      {
        label: 'source',
        cell: (d) =>
          el(
            'details',
            { class: 'fields' },
            el('summary', {}, d.source_stream, ' ', el('code', {}, d.source_id)),
            el('pre', {}, JSON.stringify(d.fields ?? {}, null, 2)),
          ),
      },
      { label: 'reason', cell: (d) => el('span', { class: 'reason' }, d.reason) },
      { label: 'deliveries', cell: (d) => count(d.deliveries), class: 'num' },
      { label: 'retries', cell: (d) => count(d.retries), class: 'num' },
      {
        label: '',
        cell: () => [
          el('button', { type: 'button', 'data-action': 'retry' }, 'Retry'),
          ' ',
          el('button', { type: 'button', 'data-action': 'discard', class: 'danger' }, 'Discard'),
        ],
      },
    ],
  };

  function warnIfPositive(n) {
    return Number(n) > 0 ? badge(count(n), 'warn') : count(n);
  }

  function lastError(error, current) {
    if (!error) return el('span', { class: 'muted' }, '—');
    return el(
      'div',
      { class: current ? 'last-error' : 'last-error past', title: `consumer ${error.consumer ?? '?'}` },
      badge(error.kind, current ? 'bad' : 'warn'),
      ' ',
      error.message,
      error.entry ? el('div', { class: 'muted' }, 'entry ', el('code', {}, error.entry)) : null,
      el('div', { class: 'muted' }, error.at_ms ? ago(error.at_ms) : ''),
    );
  }

  function renderOverview(overview) {
    if (!overview || typeof overview !== 'object') throw new Error('unexpected answer');
    const totals = overview.totals ?? {};
    for (const node of document.querySelectorAll('[data-total]')) {
      const field = node.dataset.total;
      node.textContent = MONEY_TOTALS.has(field) ? money(totals[field]) : count(totals[field]);
    }
    const segments = Object.entries(overview.segments ?? {});
    fill(
      $('segments'),
      el('span', { class: 'muted' }, 'segments'),
      segments.map(([name, n]) =>
        el('span', { class: 'segment', 'data-segment': name }, name, ' ', el('b', {}, count(n))),
      ),
    );
    const counts = overview.counts ?? {};
    renderList('customers', overview.customers, COLUMNS.customers, { total: counts.customers });
    renderList('products', overview.products, COLUMNS.products, { total: counts.products });
    renderList('orders', overview.orders, COLUMNS.orders, { keepLast: true, total: counts.orders });
    renderList('billings', overview.billings, COLUMNS.billings, { keepLast: true, total: counts.billings });
  }

  function renderProjections(groups) {
    renderList('projections', groups, COLUMNS.projections, {
      empty: 'No projections reported.',
      rowAttrs: (p) => ({
        'data-projection': p.group,
        class: Number(p.dead_lettered) > 0 ? 'troubled' : null,
      }),
    });
  }

  const busyDeadLetters = new Set();

  function renderDeadLetters(letters) {
    renderList('dead-letters', letters, COLUMNS.deadLetters, {
      empty: 'No dead letters.',
      rowAttrs: (d) => ({ 'data-dead-letter': `${d.projection}/${d.id}` }),
    });
    for (const key of busyDeadLetters) setRowBusy(key, true);
  }

  function setRowBusy(key, busy) {
    for (const row of document.querySelectorAll('[data-dead-letter]')) {
      if (row.dataset.deadLetter !== key) continue;
      for (const button of row.querySelectorAll('button[data-action]')) button.disabled = busy;
    }
  }

  // ---- notices and status --------------------------------------------------------------------

  let noticeTimer = 0;
  function notify(text, tone = 'ok') {
    const notice = $('notice');
    notice.textContent = text;
    notice.dataset.tone = tone;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (notice.hidden = true), tone === 'error' ? 10000 : 6000);
  }

  function setStatus(text, isError) {
    const status = $('status');
    status.textContent = text;
    status.classList.toggle('error', isError);
  }

  const FEED_STATES = {
    live: 'live',
    connecting: 'connecting…',
    reconnecting: 'reconnecting…',
    token: 'token needed',
  };
  function setFeedStatus(state, detail = '') {
    const badgeNode = $('feed-status');
    badgeNode.textContent = FEED_STATES[state];
    badgeNode.dataset.state = state;
    badgeNode.title = detail;
  }

  // ---- refresh -------------------------------------------------------------------------------

  const LOADERS = [
    // Only the rows a table shows: the server cuts the lists and says how many there are.
    ['overview', () => api(`/overview?rows=${TABLE_ROWS}`).then(renderOverview)],
    ['projections', () => api('/projections').then(renderProjections)],
    ['dead letters', () => api('/dead-letters').then(renderDeadLetters)],
  ];
  const refresh = { timer: 0, running: false, again: false };

  // Coalesces bursts: one refresh at most REFRESH_DELAY_MS after the first request.
  function scheduleRefresh() {
    if (refresh.timer) return;
    refresh.timer = setTimeout(() => {
      refresh.timer = 0;
      refreshNow();
    }, REFRESH_DELAY_MS);
  }

  // Never rejects; a refresh asked for while one runs happens once it is done.
  async function refreshNow() {
    if (refresh.running) {
      refresh.again = true;
      return;
    }
    refresh.running = true;
    const results = await Promise.allSettled(LOADERS.map(([, load]) => load()));
    const failures = results
      .map((r, i) => (r.status === 'rejected' ? `${LOADERS[i][0]}: ${r.reason?.message ?? r.reason}` : null))
      .filter(Boolean);
    setStatus(failures.length ? failures.join(' · ') : `updated ${clock(Date.now())}`, failures.length > 0);
    refresh.running = false;
    if (refresh.again) {
      refresh.again = false;
      scheduleRefresh();
    }
  }

  // ---- dead-letter actions -------------------------------------------------------------------

  function outcomeText(action, key, answer) {
    if (action === 'discard') return answer?.discarded ? `Discarded ${key}.` : `${key}: nothing discarded.`;
    switch (answer?.outcome) {
      case 'applied':
        return `Retried ${key}: applied ${answer.applied}, skipped ${answer.skipped}.`;
      case 'parked_again':
        return `Retried ${key}: parked again as ${answer.id}: ${answer.reason}`;
      case 'paused':
        return `${key}: the projection is paused by a rebuild; try again when it is done.`;
      default:
        return `${action} ${key}: ${JSON.stringify(answer)}`;
    }
  }

  async function deadLetterAction(button) {
    const key = button.closest('[data-dead-letter]')?.dataset.deadLetter;
    if (!key) return;
    const action = button.dataset.action;
    if (action === 'discard' && !window.confirm(`Discard the parked entry ${key}? It is removed for good; the event stays in the log.`)) {
      return;
    }
    if (needsToken()) {
      askForToken(`Enter the token to ${action} dead letters.`);
      $('token-input').focus();
      return;
    }
    const cut = key.indexOf('/');
    const [projection, id] = [key.slice(0, cut), key.slice(cut + 1)].map(encodeURIComponent);
    const path = `/dead-letters/${projection}/${id}/${action}`;
    busyDeadLetters.add(key);
    setRowBusy(key, true);
    try {
      const answer = await api(path, 'POST');
      const ok = answer?.outcome === 'applied' || answer?.discarded === true;
      notify(outcomeText(action, key, answer), ok ? 'ok' : 'warn');
    } catch (e) {
      if (e.status === 401) tokenRefused(e.message);
      notify(`${action} ${key}: ${e.message}`, 'error');
    } finally {
      busyDeadLetters.delete(key);
      setRowBusy(key, false);
      refreshNow();
    }
  }

  // ---- entities and their history -----------------------------------------------------------

  // One line about an entity, for the feed and the history.
  function summary(kind, e) {
    if (!e || typeof e !== 'object') return '';
    switch (kind) {
      case 'customer':
        return [e.name, e.email ? `<${e.email}>` : null].filter(Boolean).join(' ');
      case 'product':
        return `${e.name ?? ''} · ${money(e.price)}`;
      case 'inventory':
        return `amount ${count(e.amount)} · product ${short(e.product_id)}`;
      case 'order': {
        const items = Array.isArray(e.product_ids) ? e.product_ids.length : 0;
        return `total ${money(e.total)} · ${plural(items, 'item')}`;
      }
      case 'billing':
        return e.done ? 'done' : 'open';
      default:
        return '';
    }
  }

  // Ids of other entities an entity refers to, as [kind, id].
  function related(kind, e) {
    if (!e || typeof e !== 'object') return [];
    const refs = [];
    if (kind === 'order') {
      refs.push(['customer', e.customer_id]);
      for (const id of new Set(e.product_ids ?? [])) refs.push(['product', id]);
    }
    if (kind === 'inventory') refs.push(['product', e.product_id]);
    if (kind === 'billing') refs.push(['order', e.order_id]);
    return refs.filter(([, id]) => typeof id === 'string' && id);
  }

  const history = { kind: null, id: null, seq: 0 };

  function openHistory(kind, id) {
    if (!KINDS.includes(kind) || !id) return;
    const panel = $('history');
    const same = !panel.hidden && history.kind === kind && history.id === id;
    history.kind = kind;
    history.id = id;
    panel.hidden = false;
    fill($('history-title'), el('span', { class: 'kind' }, kind), ' ', el('code', {}, id));
    if (!same) {
      fill($('history-related'));
      fill($('history-body'), el('p', { class: 'empty' }, 'loading…'));
    }
    loadHistory().catch(bug);
  }

  async function loadHistory() {
    const { kind, id } = history;
    const seq = ++history.seq;
    let events;
    try {
      events = await api(`/${kind}/${encodeURIComponent(id)}/events`);
    } catch (e) {
      if (seq === history.seq) fill($('history-body'), el('p', { class: 'error' }, e.message));
      return;
    }
    if (seq !== history.seq) return;
    const list = Array.isArray(events) ? events : [];
    const latest = list.length ? list[list.length - 1].entity : null;
    const refs = related(kind, latest);
    fill(
      $('history-related'),
      refs.length ? 'refers to ' : '',
      refs.map(([k, ref]) => [el('span', { class: 'muted' }, k), ' ', entityLink(k, ref), ' ']),
    );
    const items = list.map((event, i) => historyItem(kind, event, i === list.length - 1));
    fill(
      $('history-body'),
      items.length ? el('ol', { class: 'history-list' }, items) : el('p', { class: 'empty' }, 'No events.'),
    );
  }

  function historyItem(kind, event, open) {
    return el(
      'li',
      { 'data-event-id': event.id, class: `action-${event.action}` },
      el(
        'details',
        { open },
        el(
          'summary',
          {},
          el('span', { class: 'ver' }, `v${count(event.version)}`),
          el('span', { class: 'action' }, event.action),
          el('time', { datetime: event.time }, String(event.time ?? '').replace('T', ' ')),
          el('span', { class: 'sum' }, summary(kind, event.entity)),
        ),
        el('div', { class: 'muted meta' }, `entry ${event.id} · ${event.stream} · event ${event.event_id}`),
        el('pre', {}, JSON.stringify(event.entity, null, 2)),
      ),
    );
  }

  function closeHistory() {
    $('history').hidden = true;
    history.kind = history.id = null;
    history.seq++;
  }

  // ---- live feed -----------------------------------------------------------------------------

  const feed = { generation: 0, controller: null, lastId: null };

  function startFeed() {
    stopFeed();
    if (needsToken()) {
      askForToken();
      return;
    }
    runFeed(feed.generation).catch(bug);
  }

  function stopFeed() {
    feed.generation++;
    feed.controller?.abort();
    feed.controller = null;
  }

  // Connects, reads until the stream ends, reconnects with Last-Event-ID after a growing pause.
  async function runFeed(generation) {
    const current = () => generation === feed.generation;
    let backoff = BACKOFF_FIRST_MS;
    let lastError = '';
    for (let attempt = 0; current(); attempt++) {
      setFeedStatus(attempt === 0 ? 'connecting' : 'reconnecting', lastError);
      const controller = new AbortController();
      feed.controller = controller;
      try {
        const headers = { Accept: 'text/event-stream' };
        if (token) headers.Authorization = `Bearer ${token}`;
        if (feed.lastId) headers['Last-Event-ID'] = feed.lastId;
        // A fresh page starts with the recent past; a reconnect resumes after the last event seen.
        const url = feed.lastId ? '/events/stream' : `/events/stream?last=${FEED_ITEMS / 4}`;
        const response = await fetch(url, { headers, cache: 'no-store', signal: controller.signal });
        if (response.status === 401) {
          const body = await response.json().catch(() => null);
          if (current()) tokenRefused(body?.detail);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        setFeedStatus('live');
        backoff = BACKOFF_FIRST_MS;
        lastError = 'the stream ended';
        await readEvents(response.body, (event) => current() && onFeedEvent(event));
      } catch (e) {
        lastError = e.message;
      }
      if (!current()) return;
      setFeedStatus('reconnecting', lastError);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }

  // Server-Sent Events: `field: value` lines, a blank line ends an event, `:` starts a comment.
  async function readEvents(body, dispatch) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let event = { id: '', event: '', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (event.data.length) dispatch({ id: event.id, event: event.event, data: event.data.join('\n') });
          event = { id: '', event: '', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') event.data.push(text);
        else if (field === 'id' || field === 'event') event[field] = text;
      }
    }
  }

  function onFeedEvent({ id, event, data }) {
    let payload;
    try {
      payload = parseJson(data);
    } catch {
      return;
    }
    const entryId = id || payload?.id || '';
    if (entryId && feed.lastId && compareEntryIds(entryId, feed.lastId) <= 0) return;
    if (entryId) {
      feed.lastId = entryId;
      $('last-id').textContent = entryId;
    }
    const cut = event.lastIndexOf('_');
    const kind = cut > 0 ? event.slice(0, cut) : '';
    const action = cut > 0 ? event.slice(cut + 1) : event;
    const entity = payload?.entity ?? {};
    const entityId = entity.id ? String(entity.id) : '';
    const ms = entryMs(entryId);
    const line = summary(kind, entity);

    const item = el(
      'li',
      { 'data-event-id': entryId, 'data-entity': entityId, 'data-kind': kind, class: `action-${action}` },
      el('time', { title: entryId }, ms ? clock(ms) : '—'),
      el('span', { class: 'ev' }, event || 'message'),
      KINDS.includes(kind) ? entityLink(kind, entityId) : el('span', {}, short(entityId)),
      el('span', { class: 'ver' }, `v${count(payload?.version)}`),
      el('span', { class: 'sum', title: line }, line),
    );
    const list = $('feed');
    list.prepend(item);
    while (list.childElementCount > FEED_ITEMS) list.lastElementChild.remove();
    $('feed-empty').hidden = true;

    scheduleRefresh();
    if (!$('history').hidden && history.kind === kind && history.id === entityId) loadHistory().catch(bug);
  }

  // ---- start ---------------------------------------------------------------------------------

  function init() {
    fill(
      $('totals'),
      CARDS.map(({ label, total, more = [] }) =>
        el(
          'div',
          { class: MONEY_TOTALS.has(total) ? 'card money' : 'card' },
          el('span', { class: 'label' }, label),
          el('span', { class: 'value', 'data-total': total }, '–'),
          el(
            'span',
            { class: 'more' },
            more.map(([field, text], i) => [i ? ' · ' : '', el('span', { 'data-total': field }, '–'), ` ${text}`]),
          ),
        ),
      ),
    );

    document.addEventListener('click', (event) => {
      // An entity link, or anywhere on a feed item.
      const link = event.target.closest('[data-entity][data-kind]');
      if (link) {
        openHistory(link.dataset.kind, link.dataset.entity);
        return;
      }
      const action = event.target.closest('button[data-action]');
      if (action) deadLetterAction(action).catch(bug);
    });
    document.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !$('history').hidden) closeHistory();
    });
    $('history-close').addEventListener('click', closeHistory);
    $('token-form').addEventListener('submit', saveToken);
    $('token-forget').addEventListener('click', forgetToken);
    $('token-forget').hidden = !token;

    refreshNow();
    setInterval(refreshNow, REFRESH_EVERY_MS);
    startFeed();
  }

  init();
})();
