/* Journey Guide staff page: sign in with a staff token, review conversations, correct them, read analytics.
 * Plain DOM, no framework. Everything that comes from visitors, documents or the LLM is set with textContent
 * or attributes on elements built with createElement: never parsed as HTML. */
(function () {
  'use strict';

  const TOKEN_KEY = 'journey-guide-staff-token';
  const LOW_CONFIDENCE = 0.6;
  const LOW_RETRIEVAL = 0.45;
  const SAFE_PROTOCOLS = ['http:', 'https:', 'mailto:'];
  const COLOURS = ['#1d4ed8', '#0f766e', '#b45309', '#7c3aed', '#be123c', '#4d7c0f', '#0369a1', '#a21caf',
    '#57534e', '#c2410c'];
  const SVG_NS = 'http://www.w3.org/2000/svg'; // a namespace name, never fetched

  const state = {
    token: null,
    user: null,
    stages: [],
    labels: {},
    filters: {},
    offset: 0,
    limit: 50,
    open: null,
    listSeq: 0,
    viewSeq: 0,
    team: [],
    picked: new Set(),
  };

  // ---- DOM helpers ----

  const $ = (id) => document.getElementById(id);

  function add(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  /** An element with attributes (never href/src/style: see link()) and text or element children. */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') el.className = value;
      else if (name === 'value') el.value = value;
      else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
      else if (['href', 'src', 'style', 'srcdoc'].includes(name) || name.startsWith('on')) {
        throw new Error('unsafe attribute ' + name);
      } else el.setAttribute(name, value === true ? '' : String(value));
    }
    return add(el, kids);
  }

  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
    return add(el, kids);
  }

  function safeUrl(url) {
    try {
      const parsed = new URL(String(url), location.href);
      return SAFE_PROTOCOLS.includes(parsed.protocol) ? parsed.href : null;
    } catch (_error) {
      return null;
    }
  }

  /** A link that opens in a new tab, or plain text when the URL is not http(s) or mailto. */
  function link(url, text) {
    const href = safeUrl(url);
    if (!href) return h('span', {class: 'unsafe-url'}, text || String(url || ''));
    const a = h('a', {target: '_blank', rel: 'noopener noreferrer'}, text || href);
    a.href = href;
    return a;
  }

  function say(el, text, kind) {
    el.textContent = text || '';
    el.classList.remove('ok', 'error', 'refused');
    if (text && kind) el.classList.add(kind);
  }

  const uid = (() => { let n = 0; return (prefix) => `${prefix}-${++n}`; })();

  // ---- formatting ----

  function parseTime(value) {
    if (!value) return null;
    const text = String(value);
    return new Date(/(Z|[+-]\d\d:?\d\d)$/.test(text) ? text : text + 'Z');
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
  const shortFormat = new Intl.DateTimeFormat(undefined, {month: 'short', day: 'numeric', hour: '2-digit',
    minute: '2-digit'});
  const when = (value, format) => {
    const d = parseTime(value);
    return d && !isNaN(d) ? (format || timeFormat).format(d) : '';
  };
  const pct = (x) => (x === null || x === undefined ? '–' : `${Math.round(x * 100)}%`);
  const label = (stage) => state.labels[stage] || stage || '–';
  const colour = (stage) => COLOURS[Math.max(state.stages.indexOf(stage), 0) % COLOURS.length];

  function duration(seconds) {
    if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
    if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  function stageChip(stage, confidence) {
    const low = confidence !== null && confidence !== undefined && confidence < LOW_CONFIDENCE;
    return h('span', {class: 'stage'},
      h('span', {class: `dot c${Math.max(state.stages.indexOf(stage), 0) % COLOURS.length}`, 'aria-hidden': 'true'}),
      label(stage),
      confidence === null || confidence === undefined ? null : h('span', {class: low ? 'conf low' : 'conf'},
        ` ${pct(confidence)}`, low ? h('span', {class: 'sr-only'}, ' (low confidence)') : null));
  }

  const badge = (text, kind) => h('span', {class: `badge ${kind}`}, text);

  // ---- inbox: status and assignee ----

  const INBOX = {open: 'Open', pending: 'Pending', snoozed: 'Snoozed', resolved: 'Resolved'};

  function statusBadge(c) {
    return badge(INBOX[c.status] || c.status || 'Open', `status-${c.status || 'open'}`);
  }

  /** "Snoozed until 4 Dec, 09:00", "Resolved", ...: a conversation's status in words. */
  const statusText = (c) => (c.status === 'snoozed' && c.until
    ? `Snoozed until ${when(c.until)}` : INBOX[c.status] || c.status || 'Open');

  /** A datetime-local input's value for a Date (local time, to the minute). */
  function localInput(date) {
    const pad = (n) => String(n).padStart(2, '0');
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:`
      + pad(date.getMinutes());
  }

  /** The body of PUT .../status for a status select and its "until" input (tomorrow 9:00 when left empty). */
  function statusBody(select, untilInput) {
    if (select.value !== 'snoozed') return {status: select.value};
    return {status: 'snoozed', until: untilInput.value ? new Date(untilInput.value).toISOString() : undefined};
  }

  /** Show the "until" field only when snoozing, with tomorrow 9:00 as the default. */
  function untilFollows(select, wrap, input) {
    const sync = () => {
      wrap.hidden = select.value !== 'snoozed';
      if (!wrap.hidden && !input.value) {
        const morning = new Date();
        morning.setDate(morning.getDate() + 1);
        morning.setHours(9, 0, 0, 0);
        input.value = localInput(morning);
      }
    };
    select.addEventListener('change', sync);
    sync();
  }

  const teamOptions = (first) => [h('option', {value: ''}, first), ...state.team.map((n) => h('option', {value: n}, n))];

  /** PUT a status or assignee on each conversation, one after the other; returns [changed, first error]. */
  async function changeEach(ids, what, body) {
    let changed = 0;
    let failure = null;
    for (const id of ids) {
      try {
        await api('PUT', `/v1/staff/conversations/${encodeURIComponent(id)}/${what}`, body);
        changed += 1;
      } catch (error) {
        failure = failure || error;
      }
    }
    return [changed, failure];
  }

  /** A local date input as a UTC ISO time: its midnight, or the next midnight for an end date. */
  function dayBound(value, end) {
    if (!value) return null;
    const [y, m, d] = value.split('-').map(Number);
    return new Date(y, m - 1, d + (end ? 1 : 0)).toISOString();
  }

  // ---- token and API ----

  const store = {
    memory: null,
    get() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (_e) { return this.memory; } },
    set(value) { try { sessionStorage.setItem(TOKEN_KEY, value); } catch (_e) { this.memory = value; } },
    clear() { try { sessionStorage.removeItem(TOKEN_KEY); } catch (_e) { /* memory only */ } this.memory = null; },
  };

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = {authorization: `Bearer ${state.token}`};
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {method, headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (_error) {
      throw new ApiError(0, 'The server could not be reached. Check your connection and try again.');
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (response.ok) return data;
    const detail = typeof data.detail === 'string' ? data.detail : data.error || response.statusText;
    if (response.status === 401) {
      signOut(`Your token was not accepted (${detail}). Sign in again.`);
      throw new ApiError(401, 'Signed out.');
    }
    if (response.status === 403) {
      const role = state.user ? state.user.role : 'your';
      throw new ApiError(403, `Your role (${role}) can't do this: ${detail.replace(/; your token has \w+$/, '')}.`);
    }
    throw new ApiError(response.status, `Error ${response.status}: ${detail}`);
  }

  /** Run an action, showing its outcome in msg: refused (403), error, or ok with okText. */
  async function act(msg, okText, action) {
    say(msg, 'Saving…');
    try {
      const result = await action();
      say(msg, okText, 'ok');
      return result;
    } catch (error) {
      say(msg, error.message, error.status === 403 ? 'refused' : 'error');
      return undefined;
    }
  }

  // ---- sign in and out ----

  function show(view) {
    for (const name of ['signin', 'live', 'conversations', 'analytics', 'answers']) {
      $(`view-${name}`).hidden = name !== view;
    }
    for (const a of document.querySelectorAll('#tabs a')) {
      if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  function signOut(message) {
    stopLive();
    store.clear();
    Object.assign(state, {token: null, user: null, open: null});
    $('tabs').hidden = true;
    $('who').hidden = true;
    $('conversation-table').tBodies[0].replaceChildren();
    $('transcript').replaceChildren(h('p', {class: 'empty'}, 'Choose a conversation to read its transcript.'));
    say($('signin-msg'), message || '', message ? 'error' : null);
    show('signin');
    $('token').value = '';
    $('token').focus();
  }

  async function signIn(token) {
    state.token = token;
    let stages;
    try {
      state.user = await api('GET', '/v1/staff/me');
      ({stages} = await api('GET', '/v1/staff/stages'));
    } catch (error) {
      if (error.status !== 401) { show('signin'); say($('signin-msg'), error.message, 'error'); }
      return;
    }
    store.set(token);
    try {
      ({names: state.team} = await api('GET', '/v1/staff/team'));
    } catch (_error) {
      state.team = [];
    }
    const assignee = $('f-assignee');
    while (assignee.options.length > 3) assignee.remove(3); // keep Anyone, Me and Nobody
    add(assignee, state.team.map((n) => h('option', {value: n}, n)));
    $('bulk-assignee').replaceChildren(...teamOptions('Nobody'));
    $('bulk').hidden = state.user.role === 'viewer';
    $('export').hidden = state.user.role === 'viewer';
    state.stages = stages.map((st) => st.name);
    state.labels = Object.fromEntries(stages.map((st) => [st.name, st.label]));
    const select = $('f-stage');
    select.replaceChildren(h('option', {value: ''}, 'All stages'),
      ...stages.map((st) => h('option', {value: st.name}, st.label)));
    $('who-name').textContent = `${state.user.name} · ${state.user.role}`;
    $('who').hidden = false;
    $('tabs').hidden = false;
    say($('signin-msg'), '');
    $('token').value = '';
    state.offset = 0;
    startLive();
    await route();
    if (document.activeElement === document.body) $('main').focus({preventScroll: true});
  }

  // ---- routing: #/conversations[/id], #/analytics, #/answers ----

  async function route() {
    if (!state.user) return show('signin');
    const [, view, id] = location.hash.split('/');
    const seq = ++state.viewSeq;
    if (view === 'analytics') {
      show('analytics');
      return loadAnalytics();
    }
    if (view === 'answers') {
      show('answers');
      loadCanned();
      return loadAnswers();
    }
    if (view === 'live') return show('live');
    show('conversations');
    if (view === 'customers' && id) {
      if (!$('conversation-table').tBodies[0].rows.length) await loadList();
      state.open = null;
      markOpen();
      return openCustomer(decodeURIComponent(id));
    }
    if (!$('conversation-table').tBodies[0].rows.length) await loadList();
    if (seq !== state.viewSeq) return;
    const wanted = id ? decodeURIComponent(id) : null;
    if (wanted !== state.open) await openConversation(wanted);
  }

  // ---- conversations ----

  function readFilters() {
    const form = $('filters');
    const f = {};
    for (const name of ['stage', 'status', 'assignee']) if (form.elements[name].value) f[name] = form.elements[name].value;
    const since = dayBound(form.elements.since.value, false);
    const until = dayBound(form.elements.until.value, true);
    if (since) f.since = since;
    if (until) f.until = until;
    const q = form.elements.q.value.trim();
    if (q) f.q = q;
    for (const box of form.querySelectorAll('input[type=checkbox]')) if (box.checked) f[box.name] = 'true';
    return f;
  }

  async function loadList() {
    const seq = ++state.listSeq;
    const params = new URLSearchParams({...state.filters, limit: state.limit, offset: state.offset});
    say($('list-msg'), '');
    $('list-count').textContent = 'Loading…';
    let data;
    try {
      data = await api('GET', `/v1/staff/conversations?${params}`);
    } catch (error) {
      if (seq === state.listSeq) { say($('list-msg'), error.message, 'error'); $('list-count').textContent = ''; }
      return;
    }
    if (seq !== state.listSeq) return;
    const body = $('conversation-table').tBodies[0];
    body.replaceChildren(...data.items.map(row));
    if (!data.items.length) {
      body.append(h('tr', {}, h('td', {colspan: 3, class: 'empty'}, 'No conversations match these filters.')));
    }
    state.picked.clear();
    picked();
    const first = data.total ? data.offset + 1 : 0;
    const last = data.offset + data.items.length;
    $('list-count').textContent = `${data.total} conversation${data.total === 1 ? '' : 's'}`;
    $('page-info').textContent = `${first}–${last} of ${data.total}`;
    $('prev').disabled = data.offset === 0;
    $('next').disabled = last >= data.total;
    markOpen();
  }

  function row(c) {
    const open = h('a', {class: 'open', onclick: (event) => { // the open one again: read it again (the hash stays)
      if (state.open !== c.id) return;
      event.preventDefault();
      openConversation(c.id);
    }}, c.first_question || '(no question)');
    open.href = `#/conversations/${encodeURIComponent(c.id)}`;
    const pick = h('input', {type: 'checkbox', 'aria-label': `Select: ${c.first_question || c.id}`, onchange: () => {
      if (pick.checked) state.picked.add(c.id); else state.picked.delete(c.id);
      picked();
    }});
    return h('tr', {'data-id': c.id},
      h('td', {class: 'pick'}, pick),
      h('td', {class: 'when'}, h('time', {datetime: parseTime(c.updated_at).toISOString()},
        when(c.updated_at, shortFormat)), h('br'), stageChip(c.stage, c.stage_confidence)),
      h('td', {class: 'question'}, open,
        h('span', {class: 'flags'},
          h('span', {class: 'turn-count'}, `${c.turns} turn${c.turns === 1 ? '' : 's'}`),
          statusBadge(c),
          c.status === 'snoozed' && c.until ? h('span', {class: 'muted'}, `until ${when(c.until, shortFormat)}`) : null,
          c.assignee ? h('span', {class: 'assignee'}, `Assigned to ${c.assignee}`) : null,
          c.handoff ? badge('Handoff', 'handoff') : null,
          c.thumbs_down ? badge('Thumbs down', 'down') : null,
          c.reviewed_at ? badge('Reviewed', 'reviewed') : null)));
  }

  /** The bulk bar follows the ticked rows. */
  function picked() {
    const n = state.picked.size;
    $('bulk-count').textContent = n ? `${n} selected` : 'Tick conversations to change them together';
    for (const button of $('bulk').querySelectorAll('button')) button.disabled = n === 0;
    const boxes = [...$('conversation-table').tBodies[0].querySelectorAll('td.pick input')];
    $('pick-all').checked = boxes.length > 0 && boxes.every((b) => b.checked);
  }

  async function bulkChange(event) {
    event.preventDefault();
    const form = $('bulk');
    const what = event.submitter && event.submitter.value === 'assignee' ? 'assignee' : 'status';
    const ids = [...state.picked];
    const body = what === 'status' ? statusBody(form.elements.status, form.elements.until)
      : {assignee: form.elements.assignee.value || null};
    const msg = $('bulk-msg');
    say(msg, 'Saving…');
    const [changed, failure] = await changeEach(ids, what, body);
    const done = what === 'status' ? `set to ${statusText(body)}` : `assigned to ${body.assignee || 'nobody'}`;
    if (failure) {
      say(msg, `${changed} of ${ids.length} ${done}. ${failure.message}`, failure.status === 403 ? 'refused' : 'error');
    } else say(msg, `${changed} conversation${changed === 1 ? '' : 's'} ${done}.`, 'ok');
    if (changed) {
      await loadList();
      if (state.open && ids.includes(state.open)) await openConversation(state.open, true);
    }
  }

  /** Download the export (CSV or JSON lines) of the touchpoints of the conversations the current filters list. */
  async function exportList(format) {
    const msg = $('export-msg');
    say(msg, 'Preparing the export…');
    const params = new URLSearchParams({...state.filters, format});
    let response;
    try {
      response = await fetch(`/v1/staff/export?${params}`, {headers: {authorization: `Bearer ${state.token}`},
        cache: 'no-store'});
    } catch (_error) {
      return say(msg, 'The server could not be reached. Check your connection and try again.', 'error');
    }
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      const detail = typeof data.detail === 'string' ? data.detail : response.statusText;
      return say(msg, `Error ${response.status}: ${detail}`, response.status === 403 ? 'refused' : 'error');
    }
    const blob = await response.blob();
    const name = `touchpoints-${new Date().toISOString().slice(0, 10)}.${format}`;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 5000);
    const filtered = Object.keys(state.filters).length ? 'with the current filters' : 'of every conversation';
    say(msg, `Downloaded ${name} (${Math.max(1, Math.round(blob.size / 1024))} KB), ${filtered}.`, 'ok');
  }

  function markOpen() {
    for (const tr of $('conversation-table').tBodies[0].rows) {
      if (tr.dataset.id && tr.dataset.id === state.open) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    }
  }

  async function openConversation(id, keepFocus) {
    state.open = id;
    markOpen();
    const pane = $('transcript');
    if (!id) {
      pane.replaceChildren(h('p', {class: 'empty'}, 'Choose a conversation to read its transcript.'));
      return;
    }
    pane.replaceChildren(h('p', {class: 'empty', role: 'status'}, 'Loading transcript…'));
    let data;
    try {
      data = await api('GET', `/v1/staff/conversations/${encodeURIComponent(id)}`);
    } catch (error) {
      if (state.open === id) pane.replaceChildren(h('p', {class: 'msg error', role: 'alert'}, error.message));
      return;
    }
    if (state.open !== id) return;
    pane.replaceChildren();
    add(pane, transcript(data));
    if (keepFocus) return;
    pane.scrollTop = 0;
    pane.focus({preventScroll: true});
    if (window.matchMedia('(max-width: 1099px)').matches) pane.scrollIntoView({block: 'start'});
  }

  function transcript(c) {
    return [
      header(c),
      c.events.length ? h('section', {class: 'events', 'aria-label': 'Events'},
        h('h3', {}, 'Events'), h('ul', {}, c.events.map((e) => eventItem(e, c.turns)))) : null,
      notesSection(c),
      h('ol', {class: 'turns', 'aria-label': 'Turns'}, c.turns.map(turn)),
    ];
  }

  const IDENTITY_LABELS = {name: 'Name', email: 'Email', id: 'Customer id', plan: 'Plan',
    known_customer: 'Known customer', verified: 'Signed by the site'};

  /** What the host page said about the visitor, as labelled fields (null when it said nothing). */
  function identityFields(identity) {
    const entries = Object.entries(identity || {}).filter(([k]) => k !== 'signature' && k !== 'expires');
    if (!entries.length) return null;
    const order = Object.keys(IDENTITY_LABELS);
    const rank = (key) => (order.includes(key) ? order.indexOf(key) : order.length);
    entries.sort(([a], [b]) => rank(a) - rank(b));
    const shown = (v) => (typeof v === 'boolean' ? (v ? 'yes' : 'no') : typeof v === 'object' ? JSON.stringify(v) : v);
    return h('dl', {class: 'identity'}, entries.map(([k, v]) => h('div', {},
      h('dt', {}, IDENTITY_LABELS[k] || k), h('dd', {}, shown(v)))));
  }

  /** A signed customer's conversations on every device, their journey with dates, feedback and handoffs. */
  async function openCustomer(customerId) {
    const pane = $('transcript');
    pane.replaceChildren(h('p', {class: 'empty', role: 'status'}, 'Loading the customer…'));
    let data;
    try {
      data = await api('GET', `/v1/staff/customers/${encodeURIComponent(customerId)}`);
    } catch (error) {
      pane.replaceChildren(h('p', {class: 'msg error', role: 'alert'}, error.message));
      return;
    }
    const conversation = (x) => {
      const a = h('a', {}, x.first_question || '(no question)');
      a.href = `#/conversations/${encodeURIComponent(x.id)}`;
      return h('li', {}, a, h('div', {class: 'meta'}, h('span', {class: 'muted'}, when(x.updated_at, shortFormat)),
        stageChip(x.stage), statusBadge(x), h('span', {class: 'muted'}, `${x.turns} turn${x.turns === 1 ? '' : 's'}`),
        h('span', {class: 'muted'}, 'visitor ', h('code', {}, x.visitor_id))));
    };
    const visitors = new Set(data.conversations.map((x) => x.visitor_id)).size;
    const asked = new Map(data.conversations.map((x) => [x.id, x.first_question]));
    /** One step of the journey: when, the stage it reached, and in which conversation. */
    const journeyStep = (j) => {
      const a = h('a', {}, asked.get(j.conversation_id) || j.conversation_id);
      a.href = `#/conversations/${encodeURIComponent(j.conversation_id)}`;
      const at = parseTime(j.at);
      return h('li', {}, h('time', {class: 'at', datetime: at && !isNaN(at) ? at.toISOString() : null}, when(j.at)),
        stageChip(j.stage), h('span', {class: 'where'}, h('span', {class: 'muted'}, 'in '), a));
    };
    pane.replaceChildren(h('header', {class: 'tr-head'},
      h('h2', {}, 'Customer ', h('code', {}, data.customer_id)),
      identityFields(data.identity),
      h('p', {class: 'muted'}, `${data.total} conversation${data.total === 1 ? '' : 's'} from ${visitors} `
        + `device${visitors === 1 ? '' : 's'} or browser${visitors === 1 ? '' : 's'}`)),
    h('section', {class: 'customer-journey', 'aria-label': 'Journey'}, h('h3', {}, 'Journey'),
      data.journey.length ? h('ol', {class: 'journey'}, data.journey.map(journeyStep))
        : h('p', {class: 'empty'}, 'No stage yet.')),
    h('section', {'aria-label': 'Conversations'}, h('h3', {}, 'Conversations'),
      h('ul', {class: 'customer-conversations'}, data.conversations.map(conversation))),
    h('section', {'aria-label': 'Feedback'}, h('h3', {}, 'Feedback'), data.feedback.length
      ? h('ul', {}, data.feedback.map((f) => h('li', {}, f.rating === 'down' ? badge('Thumbs down', 'down')
        : badge('Thumbs up', 'up'), ' ', when(f.at), f.comment ? [' · “', f.comment, '”'] : null)))
      : h('p', {class: 'empty'}, 'No feedback.')),
    h('section', {'aria-label': 'Handoffs'}, h('h3', {}, 'Handoffs'), data.handoffs.length
      ? h('ul', {}, data.handoffs.map((x) => h('li', {}, badge('Handoff', 'handoff'), ' ', when(x.at),
        x.email ? [' · ', link(`mailto:${x.email}`, x.email)] : null, x.message ? [' · “', x.message, '”'] : null)))
      : h('p', {class: 'empty'}, 'No handoffs.')));
    pane.scrollTop = 0;
  }

  /** Internal notes: staff only, never shown to the visitor (the visitor API does not return them). */
  function notesSection(c) {
    const noteItem = (n) => h('li', {}, h('p', {class: 'text'}, n.text),
      h('p', {class: 'muted'}, `${n.author} · ${when(n.created_at)}`));
    const list = h('ul', {class: 'note-list'}, (c.notes || []).map(noteItem));
    const editor = state.user && state.user.role !== 'viewer';
    const textId = uid('note-text');
    const msg = h('span', {class: 'msg', role: 'status'});
    const text = h('textarea', {id: textId, name: 'text', rows: 2, maxlength: 4000, required: true});
    const form = editor ? h('form', {class: 'stack', 'data-form': 'note', onsubmit: async (event) => {
      event.preventDefault();
      const made = await act(msg, 'Note added.', () => api('POST',
        `/v1/staff/conversations/${encodeURIComponent(c.id)}/notes`, {text: text.value}));
      if (made) { list.append(noteItem(made)); text.value = ''; }
    }}, h('label', {for: textId}, 'New internal note'), text,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Add note'), msg)) : null;
    return h('section', {class: 'notes', 'aria-label': 'Internal notes'},
      h('h3', {}, 'Internal notes ', h('span', {class: 'muted'}, '(staff only: the visitor never sees them)')),
      list, form);
  }

  function header(c) {
    const reviewMsg = h('span', {class: 'msg', role: 'status'});
    const reviewed = Boolean(c.reviewed);
    const review = h('button', {type: 'button', class: reviewed ? 'quiet' : null, onclick: async () => {
      const done = await act(reviewMsg, reviewed ? 'Marked not reviewed.' : 'Marked reviewed.',
        () => api('PUT', `/v1/staff/conversations/${encodeURIComponent(c.id)}/review`, {reviewed: !reviewed}));
      if (done === undefined) return;
      c.reviewed = reviewed ? null : {by: state.user.name, at: new Date().toISOString()};
      const fresh = header(c);
      el.replaceWith(fresh);
      say(fresh.querySelector('.actions .msg'), reviewMsg.textContent, 'ok');
      fresh.querySelector('.actions button').focus();
      loadList();
    }}, reviewed ? 'Mark not reviewed' : 'Mark reviewed');
    const page = c.first_page && c.first_page.url ? link(c.first_page.url, c.first_page.title || c.first_page.url) : '–';
    const identity = identityFields(c.identity);
    const customer = c.identity && c.identity.verified && c.identity.id ? h('a', {class: 'customer-link'},
      'Customer view: every conversation of this customer') : null;
    if (customer) customer.href = `#/customers/${encodeURIComponent(c.identity.id)}`;
    const back = h('button', {type: 'button', class: 'quiet back', onclick: () => {
      const current = document.querySelector('#conversation-table tr[aria-current] a');
      if (current) { current.scrollIntoView({block: 'center'}); current.focus({preventScroll: true}); }
    }}, 'Back to the list');
    const el = h('header', {class: 'tr-head'},
      back,
      h('h2', {}, 'Conversation ', h('code', {}, c.id)),
      h('dl', {class: 'facts'},
        fact('Started', when(c.created_at)),
        fact('Last activity', when(c.updated_at)),
        fact('Stage now', stageChip(c.stage)),
        fact('Status', [statusBadge(c), c.status === 'snoozed' && c.until ? ` until ${when(c.until)}` : null]),
        fact('Assignee', c.assignee || 'nobody'),
        fact('Visitor', h('code', {}, c.visitor_id)),
        fact('Landing page', page),
        identity ? fact('Identity', identity) : null,
        fact('Reviewed', c.reviewed ? `by ${c.reviewed.by}, ${when(c.reviewed.at)}` : 'not yet')),
      customer,
      h('div', {class: 'actions'}, review, reviewMsg),
      state.user && state.user.role !== 'viewer' ? inboxForms(c) : null,
      state.user && state.user.role === 'admin' ? erasure(c) : null,
      roleHint());
    return el;
  }

  /** Read the open conversation again and redraw its header (the stage now follows a correction of its last turn). */
  async function refreshHeader() {
    const id = state.open;
    let fresh;
    try {
      fresh = await api('GET', `/v1/staff/conversations/${encodeURIComponent(id)}`);
    } catch (_error) {
      return;
    }
    const old = document.querySelector('#transcript .tr-head');
    if (old && state.open === id) old.replaceWith(header(fresh));
    loadList();
  }

  /** Erase the visitor (admin): a confirmation naming what goes, then the counts of what went. */
  function erasure(c) {
    const msg = h('span', {class: 'msg', role: 'status'});
    const box = h('div', {class: 'erase'});
    const ask = async () => {
      let total = '?';
      try {
        total = (await api('GET', `/v1/staff/conversations?${new URLSearchParams({visitor_id: c.visitor_id, limit: 1})}`))
          .total;
      } catch (_error) { /* the confirmation still names the visitor */ }
      const yes = h('button', {type: 'button', class: 'danger', onclick: async () => {
        const done = await act(msg, 'Erasing…', () => api('DELETE', `/v1/staff/visitors/${encodeURIComponent(c.visitor_id)}`));
        if (!done) return;
        const e = done.erased;
        state.open = null;
        location.hash = '#/conversations';
        const n = (count, word) => `${count || 0} ${word}${count === 1 ? '' : 's'}`;
        $('transcript').replaceChildren(h('p', {class: 'msg ok', role: 'status'}, `Visitor ${c.visitor_id} erased: `
          + `${n(e.conversations, 'conversation')}, ${n(e.touchpoints, 'touchpoint')}, ${n(e.notes, 'note')}, `
          + `${n(e.annotations, 'annotation')}.`));
        loadList();
      }}, `Yes, erase visitor ${c.visitor_id}`);
      const no = h('button', {type: 'button', class: 'quiet', onclick: () => { box.replaceChildren(start); start.focus(); }},
        'Keep everything');
      box.replaceChildren(h('p', {class: 'confirm', role: 'alert'}, `Erase visitor ${c.visitor_id}? This permanently `
        + `deletes their ${total} conversation${total === 1 ? '' : 's'} with every turn, feedback, handoff, status `
        + 'change, internal note, annotation and review, the stage examples learned from their words and their words '
        + 'quoted on other turns. Curated answers written from their turns stay, detached. This cannot be undone.'),
      h('div', {class: 'actions'}, yes, no, msg));
      no.focus();
    };
    const start = h('button', {type: 'button', class: 'quiet danger', onclick: ask}, 'Erase this visitor…');
    box.append(start);
    return box;
  }

  /** Status and assignee of the open conversation; after a change the transcript is read again (with its event). */
  function inboxForms(c) {
    const again = async (formName, text) => {
      await openConversation(c.id, true);
      const form = document.querySelector(`#transcript form[data-form=${formName}]`);
      if (form) { say(form.querySelector('.msg'), text, 'ok'); form.querySelector('button').focus(); }
      loadList();
    };
    const statusId = uid('status');
    const untilId = uid('until');
    const statusMsg = h('span', {class: 'msg', role: 'status'});
    const select = h('select', {id: statusId, name: 'status'},
      Object.entries(INBOX).map(([value, name]) => h('option', {value}, name)));
    select.value = c.status || 'open';
    const until = h('input', {id: untilId, name: 'until', type: 'datetime-local'});
    if (c.status === 'snoozed' && c.until) until.value = localInput(parseTime(c.until));
    const untilWrap = h('span', {class: 'until'}, h('label', {for: untilId}, 'until'), until);
    untilFollows(select, untilWrap, until);
    const statusForm = h('form', {class: 'row', 'data-form': 'status', onsubmit: async (event) => {
      event.preventDefault();
      const body = statusBody(select, until);
      const done = await act(statusMsg, 'Saved.',
        () => api('PUT', `/v1/staff/conversations/${encodeURIComponent(c.id)}/status`, body));
      if (done) await again('status', `Status: ${statusText(done)}.`);
    }}, h('label', {for: statusId}, 'Status'), select, untilWrap, h('button', {type: 'submit'}, 'Save status'),
    statusMsg);
    const ownerId = uid('owner');
    const ownerMsg = h('span', {class: 'msg', role: 'status'});
    const owner = h('select', {id: ownerId, name: 'assignee'}, teamOptions('Nobody'));
    owner.value = c.assignee || '';
    const ownerForm = h('form', {class: 'row', 'data-form': 'assignee', onsubmit: async (event) => {
      event.preventDefault();
      const done = await act(ownerMsg, 'Saved.', () => api('PUT',
        `/v1/staff/conversations/${encodeURIComponent(c.id)}/assignee`, {assignee: owner.value || null}));
      if (done) await again('assignee', `Assigned to ${done.assignee || 'nobody'}.`);
    }}, h('label', {for: ownerId}, 'Assign to'), owner, h('button', {type: 'submit'}, 'Assign'), ownerMsg);
    return h('div', {class: 'inbox'}, statusForm, ownerForm);
  }

  /** One message: who said it, then the text (never parsed as HTML). */
  const bubble = (kind, who, text) => h('div', {class: `bubble ${kind}`}, h('p', {class: 'who-said'}, who),
    h('p', {class: 'text'}, text));

  /** The guide's reply as the widget shows it: its own safe Markdown renderer (widget/widget.js), never HTML. */
  function guideBubble(reply, sources) {
    const body = h('div', {class: 'text md'});
    if (window.JourneyMarkdown) window.JourneyMarkdown.markdown(body, reply || '', sources || []);
    else body.textContent = reply || '';
    return h('div', {class: 'bubble guide'}, h('p', {class: 'who-said'}, 'Guide'), body);
  }

  const fact = (term, value) => h('div', {}, h('dt', {}, term), h('dd', {}, value));

  function roleHint() {
    if (!state.user || state.user.role !== 'viewer') return null;
    return h('p', {class: 'hint'}, 'Your token has the viewer role: you can read everything, but corrections, '
      + 'reviews and answers need an editor token.');
  }

  function eventItem(e, turns) {
    const data = e.data || {};
    if (e.kind === 'handoff') {
      const email = data.email ? link(`mailto:${data.email}`, data.email) : 'no email';
      return h('li', {class: 'event handoff'}, badge('Handoff', 'handoff'), ' requested ', when(e.created_at),
        ' · reply to ', email, data.email_from ? ` (given by the ${data.email_from})` : '',
        data.message ? [' · “', data.message, '”'] : null);
    }
    if (e.kind === 'feedback') {
      const about = turns.find((t) => t.id === data.message_id);
      const rating = data.rating === 'down' ? badge('Thumbs down', 'down') : badge('Thumbs up', 'up');
      return h('li', {class: 'event'}, rating, ` on turn ${about ? about.turn : '?'} · `, when(e.created_at),
        data.comment ? [' · “', data.comment, '”'] : null);
    }
    if (e.kind === 'status') {
      const until = data.status === 'snoozed' && data.until ? ` until ${when(data.until)}` : '';
      const who = data.by === 'visitor' ? 'Reopened by a visitor message'
        : data.reason === 'followed_up' ? `${data.by} followed up (the request nobody took)` : `${data.by} set it`;
      return h('li', {class: 'event'}, badge(INBOX[data.status] || data.status, `status-${data.status}`),
        ` ${who} · ${when(e.created_at)}${until}`);
    }
    if (e.kind === 'assignee') {
      return h('li', {class: 'event'}, badge('Assigned', 'assigned'),
        ` ${data.by} assigned it to ${data.assignee || 'nobody'} · ${when(e.created_at)}`);
    }
    const said = {visitor_message: 'Visitor', human_message: data.name || 'Staff'}[e.kind];
    if (said) {
      return h('li', {class: 'event'}, badge('Live', 'st-live'), ` ${said} · ${when(e.created_at)} · “`, data.text, '”');
    }
    if (e.kind.startsWith('handoff_')) {
      const what = {handoff_claimed: `${data.name || 'Staff'} joined`, handoff_returned: 'Handed back to the guide',
        handoff_closed: data.followed_up ? 'Followed up' : 'Closed', handoff_unavailable: 'No one available', handoff_contact: 'Email given'}[e.kind];
      return h('li', {class: 'event'}, badge(what || e.kind, 'handoff'), ' ', when(e.created_at),
        data.email ? [' · ', link(`mailto:${data.email}`, data.email)] : null, data.text ? [' · ', data.text] : null);
    }
    return h('li', {class: 'event'}, `${e.kind} · ${when(e.created_at)}`);
  }

  function turn(t) {
    const st = t.stage || {};
    const lowRetrieval = t.retrieval_score == null || t.retrieval_score < LOW_RETRIEVAL;
    const fb = t.feedback;
    const note = t.annotation;
    return h('li', {class: 'turn', 'data-touchpoint': t.id},
      h('div', {class: 'turn-head'},
        h('h3', {}, `Turn ${t.turn}`),
        h('span', {class: 'muted'}, when(t.created_at)),
        t.page && t.page.url ? h('span', {class: 'page'}, 'on ', link(t.page.url, t.page.title || t.page.url)) : null),
      bubble('visitor', 'Visitor', t.question),
      guideBubble(t.reply, t.sources),
      h('dl', {class: 'facts meta'},
        fact('Stage', [stageChip(st.name, st.confidence),
          st.changed && st.previous ? h('span', {class: 'muted'}, ` from ${label(st.previous)}`) : null]),
        fact('Retrieval', [t.retrieval_score == null ? 'no passage' : t.retrieval_score.toFixed(2),
          lowRetrieval ? [' ', badge('low', 'low')] : null]),
        fact('Mode', `${t.mode || '–'} · ${t.model || '–'}`),
        fact('Latency', t.latency_ms == null ? '–' : `${t.latency_ms} ms`),
        fact('Outcome', [t.outcome || '–', t.error ? h('span', {class: 'muted'}, ` (${t.error})`) : null]),
        fact('Feedback', fb ? [fb.rating === 'down' ? badge('Thumbs down', 'down') : badge('Thumbs up', 'up'),
          fb.comment ? ` “${fb.comment}”` : null] : 'none')),
      t.sources.length ? h('div', {class: 'sources'}, h('h4', {}, 'Sources cited'),
        h('ol', {}, t.sources.map((src) => h('li', {}, link(src.url, src.title || src.id),
          src.snippet ? h('p', {class: 'snippet'}, src.snippet) : null)))) : null,
      evidence(st),
      annotation(note),
      corrections(t));
  }

  /** What staff said about a turn (an empty, hidden paragraph until they say something). */
  function annotation(note) {
    if (!note) return h('p', {class: 'annotation', hidden: true});
    return h('p', {class: 'annotation'}, badge('Corrected', 'reviewed'), ' ',
      note.corrected_stage ? `Right stage: ${label(note.corrected_stage)}. ` : '',
      note.tags && note.tags.length ? `Tags: ${note.tags.join(', ')}. ` : '',
      note.note ? `Note: ${note.note} ` : '',
      h('span', {class: 'muted'}, `(${note.updated_by}, ${when(note.updated_at)})`));
  }

  function evidence(st) {
    const items = (st.evidence || []).map((e) => h('li', {}, h('b', {}, evidenceName(e.type)), ' ', evidenceText(e)));
    const scores = Object.entries(st.scores || {}).filter(([, v]) => v >= 0.01).sort((a, b) => b[1] - a[1]);
    return h('details', {class: 'evidence'},
      h('summary', {}, `Why ${label(st.name)}? (${items.length} clue${items.length === 1 ? '' : 's'})`),
      h('ul', {}, items),
      scores.length ? h('p', {class: 'muted'}, 'Scores: ', scores.map(([k, v]) => `${label(k)} ${pct(v)}`).join(', '))
        : null);
  }

  const EVIDENCE_NAMES = {example: 'Similar example', words: 'Telling words', page_rule: 'Page rule',
    known_customer: 'Known customer', context: 'Read with the previous message', kept_previous: 'Kept previous stage',
    vague: 'Vague message', transition: 'Transition', llm: 'LLM vote',
    correction: 'Staff correction'};
  const evidenceName = (type) => `${EVIDENCE_NAMES[type] || type}:`;

  function evidenceText(e) {
    const to = e.stage ? ` → ${label(e.stage)}` : '';
    if (e.type === 'example' && e.erased) return `a learned example, erased with its visitor${to}`;
    const learned = e.learned ? ', learned from a staff correction' : '';
    if (e.type === 'example') return `“${e.text}”${to} (similarity ${Number(e.similarity).toFixed(2)}${learned})`;
    if (e.type === 'words') return `${(e.words || []).join(', ')}${to}`;
    if (e.type === 'page_rule') return `${e.detail || `page matches '${e.pattern}'`}${to}`;
    if (e.type === 'llm') return `${label(e.stage)} at ${pct(e.confidence)}${e.detail ? `: ${e.detail}` : ''}`;
    if (e.detail) return `${e.detail}${e.type === 'kept_previous' ? '' : to}`;
    const rest = Object.entries(e).filter(([k]) => k !== 'type');
    return rest.map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
  }

  function corrections(t) {
    const id = t.id;
    const noted = (change) => {
      t.annotation = {...(t.annotation || {tags: [], note: null}), ...change, updated_by: state.user.name,
        updated_at: new Date().toISOString()};
      const old = document.querySelector(`.turn[data-touchpoint="${CSS.escape(id)}"] .annotation`);
      if (old) old.replaceWith(annotation(t.annotation));
    };
    const path = `/v1/staff/touchpoints/${encodeURIComponent(id)}`;
    const note = t.annotation || {};
    const stageId = uid('fix-stage');
    const stageMsg = h('span', {class: 'msg', role: 'status'});
    const select = h('select', {id: stageId, name: 'stage'},
      state.stages.map((name) => h('option', {value: name}, label(name))));
    select.value = note.corrected_stage || (t.stage && t.stage.name) || state.stages[0];
    const stageForm = h('form', {class: 'row', onsubmit: async (event) => {
      event.preventDefault();
      const done = await act(stageMsg, `Saved: ${label(select.value)}. The detector learns it now.`,
        () => api('PUT', `${path}/stage`, {stage: select.value}));
      if (done) { noted({corrected_stage: done.stage}); refreshHeader(); }
    }, 'data-form': 'stage'}, h('label', {for: stageId}, 'Right stage'), select, h('button', {type: 'submit'}, 'Save stage'), stageMsg);

    const tagsId = uid('tags');
    const noteId = uid('note');
    const notesMsg = h('span', {class: 'msg', role: 'status'});
    const tags = h('input', {id: tagsId, name: 'tags', value: (note.tags || []).join(', '), maxlength: 900});
    const text = h('textarea', {id: noteId, name: 'note', rows: 2, maxlength: 4000, value: note.note || ''});
    const notesForm = h('form', {class: 'stack', onsubmit: async (event) => {
      event.preventDefault();
      const list = tags.value.split(',').map((x) => x.trim()).filter(Boolean);
      const done = await act(notesMsg, 'Tags and note saved.',
        () => api('PUT', `${path}/annotation`, {tags: list, note: text.value}));
      if (done) { noted({tags: done.tags, note: done.note}); tags.value = done.tags.join(', '); }
    }, 'data-form': 'notes'}, h('label', {for: tagsId}, 'Tags (comma-separated)'), tags, h('label', {for: noteId}, 'Note'), text,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save tags and note'), notesMsg));

    const qId = uid('better-q');
    const aId = uid('better-a');
    const answerMsg = h('span', {class: 'msg', role: 'status'});
    const question = h('input', {id: qId, name: 'question', value: t.question, minlength: 3, maxlength: 1000});
    const answer = h('textarea', {id: aId, name: 'answer', rows: 5, maxlength: 8000, value: t.reply});
    const answerForm = h('form', {class: 'stack', onsubmit: (event) => {
      event.preventDefault();
      act(answerMsg, 'Saved: visitors asking something close to this question get this answer from now on.',
        () => api('POST', '/v1/staff/answers', {question: question.value, answer: answer.value, touchpoint_id: id}));
    }}, h('label', {for: qId}, 'Question'), question, h('label', {for: aId}, 'Better answer'), answer,
    h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save answer'), answerMsg));

    return h('div', {class: 'fix'}, stageForm,
      h('details', {}, h('summary', {}, 'Tags and note'), notesForm),
      h('details', {}, h('summary', {}, 'Write a better answer'), answerForm));
  }

  // ---- live handoffs: the queue of requests and the chat with a visitor ----

  const STATUS_NAMES = {waiting: 'Waiting', unavailable: 'Unavailable', live: 'Live'};
  const REASONS = {visitor: 'asked for a person', api: 'requested by the site',
    bot_frustrated: 'frustrated (the guide asked)', bot_no_answer: 'the guide had no answer'};
  const live = {items: [], lastId: 0, ctl: null, retry: 0, timer: 0, tick: 0, reload: 0, seq: 0, fetchedAt: 0,
    chat: null, ended: false, since: 0, seen: new Set(), said: [], recent: [], typedAt: 0, idle: 0, typing: 0,
    known: null};
  const TITLE = document.title;
  const SOUND_KEY = 'journey-guide-staff-sound';

  // ---- notifications: the tab title, a desktop notification (with permission) and an optional sound ----

  const canNotify = () => 'Notification' in window;

  function showNotifyState() {
    const button = $('notify-on');
    const stateText = $('notify-state');
    if (!canNotify()) {
      button.hidden = true;
      stateText.textContent = 'This browser cannot show desktop notifications.';
      return;
    }
    button.hidden = Notification.permission !== 'default';
    stateText.textContent = {granted: 'Desktop notifications are on.', denied: 'Desktop notifications are blocked '
      + 'for this site in the browser settings.'}[Notification.permission] || '';
  }

  function soundOn() {
    try { return localStorage.getItem(SOUND_KEY) === 'on'; } catch (_e) { return false; }
  }

  /** A short two-note chime made on the spot (no audio file to load). */
  function chime() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    try {
      const audio = new Context();
      [660, 880].forEach((frequency, i) => {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = frequency;
        gain.gain.value = 0.08;
        tone.connect(gain).connect(audio.destination);
        tone.start(audio.currentTime + i * 0.16);
        tone.stop(audio.currentTime + i * 0.16 + 0.14);
      });
      setTimeout(() => audio.close(), 600);
    } catch (_error) { /* no sound, the title and notification still tell */ }
  }

  /** New waiting requests (not the ones already there when the queue was first read) ring and notify. */
  function announce(items) {
    const waiting = items.filter((x) => x.status === 'waiting');
    const keys = new Set(waiting.map((x) => `${x.conversation_id}@${x.requested_at}`));
    const fresh = live.known ? waiting.filter((x) => !live.known.has(`${x.conversation_id}@${x.requested_at}`)) : [];
    live.known = keys;
    document.title = waiting.length ? `(${waiting.length}) waiting · ${TITLE}` : TITLE;
    if (!fresh.length) return;
    if (soundOn()) chime();
    if (!canNotify() || Notification.permission !== 'granted') return;
    for (const x of fresh) {
      const said = x.message || x.last_message || '';
      const note = new Notification('A visitor is waiting for a person', {
        body: `${label(x.stage)}${said ? ` · “${said.slice(0, 140)}”` : ''}`, tag: `handoff-${x.conversation_id}`});
      note.onclick = () => { window.focus(); location.hash = '#/live'; note.close(); };
    }
  }
  const agentName = (a) => (a && typeof a === 'object' ? a.name : a) || '';

  /** Server-sent events read off a fetch() response: on(name, data, id) for each event; comments are skipped. */
  async function readEvents(response, on) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = /\r?\n\r?\n/.exec(buffer))) {
        const block = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        let name = 'message';
        let id = 0;
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('id:')) id = Number(line.slice(3)) || 0;
        }
        if (data.length) on(name, JSON.parse(data.join('\n')), id);
      }
    }
  }

  function startLive() {
    stopLive();
    live.tick = setInterval(tick, 1000);
    loadQueue();
    listenLive();
  }

  function stopLive() {
    if (live.ctl) live.ctl.abort();
    clearTimeout(live.timer);
    clearInterval(live.tick);
    Object.assign(live, {ctl: null, items: [], lastId: 0, retry: 0, chat: null, known: null});
    document.title = TITLE;
    $('queue').replaceChildren();
    $('chat').replaceChildren(h('p', {class: 'empty'}, 'Claim a request to talk with the visitor.'));
    $('live-count').hidden = true;
  }

  /** GET /v1/staff/live with the token (EventSource can't send it); reconnects after the last id, with backoff. */
  function listenLive() {
    clearTimeout(live.timer);
    if (!state.token || live.ctl) return;
    const ctl = (live.ctl = new AbortController());
    const headers = {authorization: `Bearer ${state.token}`};
    if (live.lastId) headers['last-event-id'] = String(live.lastId);
    (async () => {
      try {
        const response = await fetch('/v1/staff/live', {headers, signal: ctl.signal, cache: 'no-store'});
        if (response.status === 401) {
          live.ctl = null;
          return signOut('Your token was not accepted any more. Sign in again.');
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        $('live-state').textContent = 'Live updates are on.';
        loadQueue(); // whatever changed while we were not listening
        loadChatNotes();
        await readEvents(response, (name, data, id) => { live.retry = 0; liveEvent(name, data, id); });
      } catch (_error) { /* reconnect below */ }
      if (live.ctl !== ctl) return;
      live.ctl = null;
      $('live-state').textContent = 'Live updates interrupted: reconnecting…';
      live.timer = setTimeout(listenLive, Math.min(500 * 2 ** live.retry++, 10000));
    })();
  }

  function liveEvent(name, event, id) {
    if (id) {
      if (id <= live.lastId) return;
      live.lastId = id;
    }
    const data = event.data && typeof event.data === 'object' ? event.data : event;
    const cid = event.conversation_id || data.conversation_id;
    const at = event.created_at || data.created_at;
    if (name !== 'typing' && name !== 'note') {
      clearTimeout(live.reload);
      live.reload = setTimeout(loadQueue, 250);
      if (name !== 'queue' && cid) live.recent = [...live.recent.slice(-299), [cid, name, data, at]];
    }
    if (cid && cid === live.chat) chatEvent(name, data, at);
  }

  async function loadQueue() {
    const seq = ++live.seq;
    let data;
    try {
      data = await api('GET', '/v1/staff/handoffs?status=waiting,unavailable,live');
    } catch (error) {
      if (seq === live.seq && state.user) { say($('queue-msg'), error.message, 'error'); live.loadFailed = true; }
      return;
    }
    if (seq !== live.seq || !state.user) return;
    if (live.loadFailed) { say($('queue-msg'), ''); live.loadFailed = false; } // what an action said stays
    live.items = data.handoffs || [];
    live.fetchedAt = Date.now();
    renderQueue();
    announce(live.items);
  }

  function renderQueue() {
    const list = $('queue');
    const focused = document.activeElement && document.activeElement.closest('#queue li[data-id]');
    const keep = focused ? [focused.dataset.id, [...focused.querySelectorAll('button')].indexOf(document.activeElement)]
      : null;
    list.replaceChildren(...live.items.map(queueItem));
    if (!live.items.length) list.append(h('li', {class: 'empty'}, 'No one is waiting for a person.'));
    const count = (status) => live.items.filter((x) => x.status === status).length;
    const waiting = count('waiting');
    $('queue-count').textContent = `${waiting} waiting · ${count('unavailable')} to follow up · ${count('live')} live`;
    $('live-count').textContent = String(waiting);
    $('live-count').hidden = !waiting;
    $('queue-viewer').hidden = !state.user || state.user.role !== 'viewer';
    if (keep) {
      const item = list.querySelector(`li[data-id="${CSS.escape(keep[0])}"]`);
      const buttons = item ? item.querySelectorAll('button') : [];
      if (buttons.length) buttons[Math.max(Math.min(keep[1], buttons.length - 1), 0)].focus();
    }
    tick();
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, '0')} min`;
  }

  /** The waiting times count up every second without asking the server. */
  function tick() {
    const elapsed = (Date.now() - live.fetchedAt) / 1000;
    for (const el of document.querySelectorAll('#queue .waited[data-base]')) {
      const text = `waiting ${clock(Number(el.dataset.base) + elapsed)}`;
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function queueItem(x) {
    const msg = h('span', {class: 'msg', role: 'status'});
    const editor = state.user && state.user.role !== 'viewer';
    const who = agentName(x.agent);
    const mine = x.status === 'live' && who === state.user.name;
    let action;
    if (x.status === 'live') {
      action = mine ? h('button', {type: 'button', onclick: () => openFresh(x)}, 'Open chat')
        : h('span', {class: 'muted'}, `${who || 'Someone'} is talking with this visitor`);
    } else {
      action = h('button', {type: 'button', disabled: !editor, 'aria-describedby': editor ? null : 'queue-viewer',
        onclick: () => claim(x, msg)}, 'Claim');
    }
    const page = x.page && x.page.url ? link(x.page.url, x.page.title || x.page.url) : '–';
    const journey = (x.journey && x.journey.length ? x.journey : [x.stage]).filter(Boolean).map(label).join(' → ');
    return h('li', {class: `card req ${x.status}`, 'data-id': x.conversation_id,
      'aria-current': live.chat === x.conversation_id ? 'true' : null},
    h('div', {class: 'req-head'}, badge(STATUS_NAMES[x.status] || x.status, `st-${x.status}`), stageChip(x.stage),
      x.status === 'live' ? h('span', {class: 'muted'}, `live with ${who || '?'}`)
        : h('span', {class: 'waited', 'data-base': Number(x.waiting_seconds) || 0}, '')),
    h('p', {class: 'last'}, h('span', {class: 'muted'}, 'Last message: '), x.last_message ? ['“', x.last_message, '”']
      : 'none yet'),
    x.message && x.message !== x.last_message ? h('p', {class: 'last asked'},
      h('span', {class: 'muted'}, 'Asking for a person: '), '“', x.message, '”') : null,
    h('dl', {class: 'facts'},
      fact('Journey', journey || '–'),
      fact('Page', page),
      fact('Email', x.email ? link(`mailto:${x.email}`, x.email) : 'none given'),
      fact('Reason', REASONS[x.reason] || x.reason || '–'),
      fact('Asked', when(x.requested_at, shortFormat))),
    x.status === 'unavailable' ? followUp(x, editor, msg) : null,
    h('div', {class: 'actions'}, action, msg));
  }

  /** A request nobody took in time is a task: write to the visitor about their question, then mark it done. */
  function followUp(x, editor, msg) {
    const question = x.message || x.last_message || '';
    const button = h('button', {type: 'button', class: 'quiet', disabled: !editor, onclick: async () => {
      const done = await act(msg, 'Marked followed up: the conversation is resolved.',
        () => api('POST', `/v1/staff/handoffs/${encodeURIComponent(x.conversation_id)}/follow-up`));
      if (done === undefined) return;
      await loadQueue();
      say($('queue-msg'), `Followed up: conversation ${x.conversation_id} is now resolved.`, 'ok');
      if (state.user) loadList();
    }}, 'Mark followed up');
    const open = h('a', {}, 'Open the conversation');
    open.href = `#/conversations/${encodeURIComponent(x.conversation_id)}`;
    return h('div', {class: 'followup'}, h('h3', {}, 'Follow-up task'),
      h('p', {}, x.email ? ['Write to ', link(`mailto:${x.email}`, x.email)] : 'No email given: open the conversation',
        question ? [' about: “', question, '”'] : ''),
      h('div', {class: 'actions'}, button, open));
  }

  async function claim(x, msg) {
    say(msg, 'Claiming…');
    let out;
    try {
      out = await api('POST', `/v1/staff/handoffs/${encodeURIComponent(x.conversation_id)}/claim`);
    } catch (error) {
      if (error.status !== 409) return say(msg, error.message, error.status === 403 ? 'refused' : 'error');
      await loadQueue(); // shows who has it
      say($('queue-msg'), 'Another staff member claimed this conversation first.', 'error');
      return;
    }
    await openFresh({...x, status: 'live', agent: out.agent});
  }

  /** Open the chat with the queue's newest copy of the request (its transcript as of now). */
  async function openFresh(x) {
    await loadQueue();
    openChat(live.items.find((item) => item.conversation_id === x.conversation_id) || x);
  }

  /** What the transcript of a handoff says: exchanges, messages both ways and what happened to the request. */
  function transcriptItem(t) {
    const person = t.name || 'Staff';
    const line = (text) => h('li', {class: 'chat-note'}, text, ' ',
      h('span', {class: 'muted'}, when(t.created_at, shortFormat)));
    switch (t.kind) {
      case 'exchange': return [h('li', {}, bubble('visitor', 'Visitor', t.question)),
        t.reply ? h('li', {}, guideBubble(t.reply, [])) : null];
      case 'visitor_message': return h('li', {}, bubble('visitor', 'Visitor', t.text));
      case 'human_message': return h('li', {}, bubble('staff', person, t.text));
      case 'handoff': return line(['Asked for a person', t.text ? [': “', t.text, '”'] : '']);
      case 'handoff_claimed': return line(`${person} joined`);
      case 'handoff_unavailable': return line(['No one was available', t.text ? [': ', t.text] : '']);
      case 'handoff_returned': return line(`${person} handed back to the guide`);
      case 'handoff_closed': return line(`${person} closed the conversation`);
      case 'status': case 'assignee': return null; // staff bookkeeping: in the full transcript's events
      default: return line(t.kind);
    }
  }

  function openChat(x) {
    const id = x.conversation_id;
    const items = x.transcript || [];
    Object.assign(live, {chat: id, ended: false, seen: new Set(), typedAt: 0,
      since: Math.max(0, ...items.map((t) => ms(t.created_at))),
      said: items.filter((t) => t.kind === 'exchange' || t.kind === 'visitor_message')
        .map((t) => [t.question || t.text, ms(t.created_at)])});
    clearTimeout(live.idle);
    live.noteMode = false;
    const msg = h('span', {class: 'msg', role: 'status'});
    const box = h('textarea', {id: 'chat-input', name: 'text', rows: 3, maxlength: 4000});
    const picker = cannedPicker(box); // its keydown listener goes first: Enter on a canned reply inserts, not sends
    const boxLabel = h('label', {for: 'chat-input'}, 'Message to the visitor');
    const submit = h('button', {type: 'submit'}, 'Send');
    const hint = h('p', {class: 'hint'});
    const editor = state.user && state.user.role !== 'viewer';
    const modes = h('fieldset', {class: 'compose-mode'}, h('legend', {class: 'sr-only'}, 'Write'),
      h('label', {}, h('input', {type: 'radio', name: 'mode', value: 'reply', checked: true}), 'Reply to the visitor'),
      h('label', {}, h('input', {type: 'radio', name: 'mode', value: 'note', disabled: !editor}),
        'Internal note (staff only)'));
    const form = h('form', {class: 'chat-form', onsubmit: (event) => {
      event.preventDefault();
      if (live.noteMode) addChatNote(box, msg); else sendChat(box, msg);
    }}, modes, boxLabel, h('div', {class: 'compose'}, box, picker),
    h('div', {class: 'actions'}, submit,
      h('button', {type: 'button', class: 'quiet', onclick: () => endChat('release', msg)}, 'Hand back to bot'),
      h('button', {type: 'button', class: 'quiet danger', onclick: () => endChat('close', msg)}, 'Close'), msg),
    hint);
    const mode = () => {
      live.noteMode = form.elements.mode.value === 'note';
      form.classList.toggle('note-mode', live.noteMode);
      boxLabel.textContent = live.noteMode ? 'Internal note: staff only, the visitor never sees it'
        : 'Message to the visitor';
      submit.textContent = live.noteMode ? 'Add note' : 'Send';
      hint.textContent = live.noteMode ? 'Enter adds the note; Shift+Enter starts a new line.'
        : 'Enter sends; Shift+Enter starts a new line; / finds a canned reply.';
      if (live.noteMode) staffTyping(false); // writing a note is not typing to the visitor
    };
    modes.addEventListener('change', () => { mode(); box.focus(); });
    mode();
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    box.addEventListener('input', () => { if (!live.noteMode) staffTyping(Boolean(box.value.trim())); });
    const full = h('a', {}, 'Full transcript and review');
    full.href = `#/conversations/${encodeURIComponent(id)}`;
    const page = x.page && x.page.url ? link(x.page.url, x.page.title || x.page.url) : '–';
    $('chat').replaceChildren(
      h('header', {class: 'tr-head'},
        h('h2', {}, 'Live chat ', h('code', {}, id)),
        h('dl', {class: 'facts'},
          fact('Stage now', stageChip(x.stage)),
          fact('Journey', (x.journey || []).map(label).join(' → ') || '–'),
          fact('Page', page),
          fact('Email', x.email ? link(`mailto:${x.email}`, x.email) : 'none given'),
          fact('Visitor', h('code', {}, x.visitor_id || '–'))),
        full),
      h('ol', {class: 'chat-log', role: 'log', 'aria-label': 'Messages and internal notes'},
        items.map((t) => stamped(transcriptItem(t), ms(t.created_at)))),
      h('p', {class: 'typing', 'aria-live': 'polite'}),
      form);
    for (const li of document.querySelectorAll('#queue li[data-id]')) {
      if (li.dataset.id === id) li.setAttribute('aria-current', 'true');
      else li.removeAttribute('aria-current');
    }
    if (location.hash !== '#/live') location.hash = '#/live';
    // events that reached the page while the transcript was on its way: the newer ones are shown once
    for (const [cid, name, data, at] of live.recent) if (cid === id) chatEvent(name, data, at);
    loadChatNotes();
    scrollChat();
    box.focus();
  }

  const ms = (value) => { const d = parseTime(value); return d && !isNaN(d) ? Number(d) : 0; };

  /** Chat log items carry their time (data-at), so a note can take its place among them. */
  function stamped(items, at) {
    for (const li of [items].flat()) if (li) li.dataset.at = String(at || Date.now());
    return items;
  }

  /** An internal note in the chat log: marked as staff only, never sent to the visitor. */
  function showNote(n) {
    const log = document.querySelector('#chat .chat-log');
    if (!log || log.querySelector(`li[data-note="${CSS.escape(String(n.id))}"]`)) return;
    const at = ms(n.created_at);
    const item = stamped(h('li', {class: 'chat-internal', 'data-note': n.id},
      h('p', {class: 'who-said'}, `Internal note · ${n.author} `, h('span', {class: 'muted'},
        `${when(n.created_at, shortFormat)} · not shown to the visitor`)),
      h('p', {class: 'text'}, n.text)), at);
    const later = [...log.children].find((li) => Number(li.dataset.at) > at);
    log.insertBefore(item, later || null);
    if (!later) scrollChat();
  }

  /** The open chat's notes (on opening it, and after the live stream reconnects). */
  async function loadChatNotes() {
    const id = live.chat;
    if (!id) return;
    try {
      const {notes} = await api('GET', `/v1/staff/conversations/${encodeURIComponent(id)}/notes`);
      if (live.chat === id) notes.forEach(showNote);
    } catch (_error) { /* the full transcript still has them */ }
  }

  async function addChatNote(box, msg) {
    const text = box.value.trim();
    if (!text) return;
    const id = live.chat;
    const made = await act(msg, 'Note added (staff only).',
      () => api('POST', `/v1/staff/conversations/${encodeURIComponent(id)}/notes`, {text}));
    if (!made || live.chat !== id) return;
    if (box.value.trim() === text) box.value = '';
    showNote(made);
  }

  function scrollChat() {
    const log = document.querySelector('#chat .chat-log');
    if (log) log.scrollTop = log.scrollHeight;
  }

  function chatLine(item, at) {
    const log = document.querySelector('#chat .chat-log');
    if (!log) return;
    log.append(stamped(item, at));
    scrollChat();
  }

  function visitorTyping(on) {
    const line = document.querySelector('#chat .typing');
    clearTimeout(live.typing);
    if (!line) return;
    line.textContent = on ? 'The visitor is typing…' : '';
    if (on) live.typing = setTimeout(() => visitorTyping(false), 8000);
  }

  /** A live event of the open chat; what the transcript already showed (older or seen) is skipped. */
  function chatEvent(name, data, createdAt) {
    if (name === 'note') {
      if (data.note) showNote(data.note);
      return;
    }
    if (name === 'typing') {
      if (data.who === 'visitor') visitorTyping(Boolean(data.typing));
      return;
    }
    const parsed = parseTime(createdAt);
    const at = parsed && !isNaN(parsed) ? Number(parsed) : 0;
    if (at && at <= live.since) return;
    if (data.id && live.seen.has(data.id)) return;
    if (data.id) live.seen.add(data.id);
    // a message sent while waiting is also an exchange of the transcript, written just before its event
    if (name === 'visitor.message' && live.said.some(([text, t]) => text === data.text && Math.abs(at - t) < 5000)) {
      return;
    }
    if (name === 'visitor.message') {
      visitorTyping(false);
      chatLine(h('li', {}, bubble('visitor', 'Visitor', data.text)), at);
    } else if (name === 'agent.message') {
      chatLine(h('li', {}, bubble('staff', data.name || 'Staff', data.text)), at);
    } else if ((name === 'handoff.returned' || name === 'handoff.closed') && !live.ended) {
      chatEnded(name === 'handoff.closed' ? 'closed' : 'returned', data.name);
    } else if (name === 'handoff.unavailable' && data.text) {
      chatLine(h('li', {class: 'chat-note'}, 'The visitor was told: ', data.text), at);
    }
  }

  function chatEnded(how, who) {
    live.ended = true;
    clearTimeout(live.idle);
    visitorTyping(false);
    chatLine(h('li', {class: 'chat-note'}, how === 'closed' ? `${who || 'Staff'} closed the conversation.`
      : `${who || 'Staff'} handed the conversation back to the guide.`));
    for (const el of document.querySelectorAll('#chat form textarea, #chat form button')) el.disabled = true;
  }

  async function sendChat(box, msg) {
    const text = box.value.trim();
    if (!text || live.ended) return;
    const id = live.chat;
    box.value = '';
    staffTyping(false);
    say(msg, '');
    try {
      const event = await api('POST', `/v1/staff/conversations/${encodeURIComponent(id)}/messages`, {text});
      if (live.chat === id && event) chatEvent('agent.message', event.data && typeof event.data === 'object'
        ? event.data : event, event.created_at);
    } catch (error) {
      if (live.chat !== id) return;
      if (!box.value) box.value = text;
      say(msg, error.status === 409 ? 'You no longer hold this conversation.' : error.message,
        error.status === 403 ? 'refused' : 'error');
    }
  }

  /** Typing while chatting: at most one "typing" every 2 s, "stopped" after 3 s without a key or on send. */
  function staffTyping(on) {
    clearTimeout(live.idle);
    if (!live.chat || live.ended || (!on && !live.typedAt)) return;
    if (on) {
      live.idle = setTimeout(() => staffTyping(false), 3000);
      if (Date.now() - live.typedAt < 2000) return;
    }
    live.typedAt = on ? Date.now() : 0;
    api('POST', `/v1/staff/conversations/${encodeURIComponent(live.chat)}/typing`, {typing: on}).catch(() => {});
  }

  async function endChat(action, msg) {
    const id = live.chat;
    say(msg, action === 'close' ? 'Closing…' : 'Handing back…');
    try {
      await api('POST', `/v1/staff/handoffs/${encodeURIComponent(id)}/${action}`);
    } catch (error) {
      say(msg, error.message, error.status === 403 ? 'refused' : 'error');
      return;
    }
    say(msg, '');
    if (live.chat === id && !live.ended) chatEnded(action === 'close' ? 'closed' : 'returned', state.user.name);
    loadQueue();
  }

  // ---- curated answers ----

  async function loadAnswers() {
    const list = $('answers-list');
    say($('answers-msg'), '');
    let data;
    try {
      data = await api('GET', '/v1/staff/answers');
    } catch (error) {
      say($('answers-msg'), error.message, 'error');
      return;
    }
    $('answers-hint').textContent = `A visitor whose question is at least ${pct(data.threshold)} similar to a `
      + 'curated question gets its answer instead of a composed one.';
    list.replaceChildren(...data.items.map(answerItem));
    if (!data.items.length) list.append(h('li', {class: 'empty'}, 'No curated answers yet.'));
  }

  function answerItem(a) {
    const msg = h('span', {class: 'msg', role: 'status'});
    const item = h('li', {class: 'card answer', 'data-id': a.id});
    const view = () => item.replaceChildren(
      h('h2', {}, a.question),
      h('p', {class: 'text'}, a.answer),
      h('p', {class: 'muted'}, `By ${a.created_by} · updated ${when(a.updated_at)}`,
        a.touchpoint_id ? ' · written from a conversation turn' : ''),
      h('div', {class: 'actions'},
        h('button', {type: 'button', class: 'quiet', onclick: edit}, 'Edit'),
        h('button', {type: 'button', class: 'quiet danger', onclick: confirmDelete}, 'Delete'), msg));
    function edit() {
      const qId = uid('edit-q');
      const aId = uid('edit-a');
      const question = h('input', {id: qId, value: a.question, minlength: 3, maxlength: 1000, required: true});
      const answer = h('textarea', {id: aId, rows: 5, value: a.answer, maxlength: 8000, required: true});
      const saveMsg = h('span', {class: 'msg', role: 'status'});
      item.replaceChildren(h('form', {class: 'stack', onsubmit: async (event) => {
        event.preventDefault();
        const row = await act(saveMsg, 'Saved.', () => api('PUT', `/v1/staff/answers/${a.id}`,
          {question: question.value, answer: answer.value}));
        if (row) { Object.assign(a, row); view(); say(msg, 'Saved.', 'ok'); item.querySelector('button').focus(); }
      }}, h('label', {for: qId}, 'Question'), question, h('label', {for: aId}, 'Answer'), answer,
      h('div', {class: 'actions'}, h('button', {type: 'submit'}, 'Save'),
        h('button', {type: 'button', class: 'quiet', onclick: () => { view(); item.querySelector('button').focus(); }},
          'Cancel'), saveMsg)));
      question.focus();
    }
    function confirmDelete(event) {
      const actions = event.target.parentElement;
      const yes = h('button', {type: 'button', class: 'danger', onclick: async () => {
        const done = await act(msg, 'Deleted.', () => api('DELETE', `/v1/staff/answers/${a.id}`));
        if (done !== undefined) { item.remove(); say($('answers-msg'), 'Answer deleted.', 'ok'); }
      }}, 'Yes, delete');
      const no = h('button', {type: 'button', class: 'quiet', onclick: () => { view(); item.querySelector('button').focus(); }},
        'Keep it');
      actions.replaceChildren(h('span', {}, 'Delete this answer?'), yes, no, msg);
      no.focus();
    }
    view();
    return item;
  }

  // ---- canned replies: saved texts, inserted in a live chat with `/` ----

  async function fetchCanned() {
    try {
      return (await api('GET', '/v1/staff/canned')).items;
    } catch (_error) {
      return [];
    }
  }

  async function loadCanned() {
    const items = await fetchCanned();
    const list = $('canned-list');
    list.replaceChildren(...items.map((c) => {
      const msg = h('span', {class: 'msg', role: 'status'});
      const item = h('li', {class: 'card answer', 'data-id': c.id}, h('h3', {}, c.title), h('p', {class: 'text'}, c.text),
        h('div', {class: 'actions'}, h('button', {type: 'button', class: 'quiet danger', onclick: async () => {
          const done = await act(msg, 'Deleted.', () => api('DELETE', `/v1/staff/canned/${c.id}`));
          if (done !== undefined) loadCanned();
        }}, `Delete “${c.title}”`), msg));
      return item;
    }));
    if (!items.length) list.append(h('li', {class: 'empty'}, 'No canned replies yet.'));
  }

  async function createCanned(event) {
    event.preventDefault();
    const form = event.target;
    const done = await act(form.querySelector('.msg'), 'Saved.', () => api('POST', '/v1/staff/canned',
      {title: form.elements.title.value, text: form.elements.text.value}));
    if (done) { form.reset(); loadCanned(); }
  }

  /** `/` at the start of the message box lists canned replies matching what follows; Enter or Tab inserts one. */
  function cannedPicker(box) {
    let replies = [];
    let shown = [];
    let active = 0;
    fetchCanned().then((items) => { replies = items; });
    const list = h('ul', {class: 'canned', id: uid('canned'), role: 'listbox', 'aria-label': 'Canned replies',
      hidden: true});
    box.setAttribute('aria-controls', list.id);
    box.setAttribute('aria-autocomplete', 'list');
    const close = () => { list.hidden = true; shown = []; box.removeAttribute('aria-activedescendant'); };
    const pick = (reply) => {
      box.value = reply.text;
      close();
      box.focus();
      box.dispatchEvent(new Event('input'));
    };
    const render = () => {
      list.replaceChildren(...shown.map((reply, i) => h('li', {role: 'option', id: `${list.id}-${i}`,
        'aria-selected': i === active ? 'true' : 'false', onmousedown: (event) => { event.preventDefault(); pick(reply); }},
      h('b', {}, reply.title), ' ', h('span', {class: 'muted'}, reply.text.slice(0, 90)))));
      if (!shown.length) list.append(h('li', {class: 'empty'}, 'No canned reply matches.'));
      list.hidden = false;
      if (shown.length) box.setAttribute('aria-activedescendant', `${list.id}-${active}`);
    };
    box.addEventListener('input', () => {
      const value = box.value;
      if (!value.startsWith('/') || value.includes('\n')) return close();
      const q = value.slice(1).trim().toLowerCase();
      shown = replies.filter((r) => !q || r.title.toLowerCase().includes(q) || r.text.toLowerCase().includes(q))
        .slice(0, 8);
      active = 0;
      render();
    });
    box.addEventListener('keydown', (event) => {
      if (list.hidden) return;
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        if (shown.length) active = (active + (event.key === 'ArrowDown' ? 1 : shown.length - 1)) % shown.length;
        render();
      } else if ((event.key === 'Enter' || event.key === 'Tab') && shown.length) {
        event.preventDefault();
        event.stopImmediatePropagation(); // not sent: the reply goes in the box to be read and sent
        pick(shown[active]);
      } else if (event.key === 'Escape') {
        event.preventDefault();
        close();
      }
    });
    let closing = 0; // a click on an option blurs the box first; focus coming back cancels a pending close
    box.addEventListener('blur', () => { closing = setTimeout(close, 150); });
    box.addEventListener('focus', () => clearTimeout(closing));
    return list;
  }

  async function createAnswer(event) {
    event.preventDefault();
    const form = event.target;
    const msg = form.querySelector('.msg');
    const done = await act(msg, 'Saved.', () => api('POST', '/v1/staff/answers',
      {question: form.elements.question.value, answer: form.elements.answer.value}));
    if (done) { form.reset(); loadAnswers(); }
  }

  // ---- analytics ----

  async function loadAnalytics() {
    const form = $('range');
    const params = new URLSearchParams();
    const since = dayBound(form.elements.since.value, false);
    const until = dayBound(form.elements.until.value, true);
    if (since) params.set('since', since);
    if (until) params.set('until', until);
    say($('analytics-msg'), 'Loading…');
    let data;
    let gaps;
    try {
      [data, gaps] = await Promise.all([api('GET', `/v1/staff/analytics?${params}`),
        api('GET', `/v1/staff/analytics/gaps?${params}`)]);
    } catch (error) {
      say($('analytics-msg'), error.message, 'error');
      return;
    }
    say($('analytics-msg'), '');
    if (data.stages && data.stages.length) state.stages = data.stages;
    $('chart-funnel').replaceChildren(funnelChart(data.funnel));
    $('chart-transitions').replaceChildren(transitionTable(data.transitions, data.stages));
    $('chart-time').replaceChildren(timeChart(data.time_in_stage));
    $('chart-daily').replaceChildren(...dailyChart(data.daily));
    $('chart-rates').replaceChildren(ratesTable(data.rates));
    const overall = data.csat.overall;
    $('csat-overall').textContent = overall.csat === null ? 'No rated replies in this period.'
      : `Overall ${pct(overall.csat)}: ${overall.up} thumbs up, ${overall.down} thumbs down.`;
    $('chart-csat-stage').replaceChildren(csatChart(data.csat.by_stage, 'stage'));
    $('chart-csat-day').replaceChildren(csatChart(data.csat.by_day, 'day'));
    $('chart-proactive').replaceChildren(proactiveTable(data.proactive || []));
    $('gaps').replaceChildren(gapList(gaps.groups));
  }

  const nothing = (text) => h('p', {class: 'empty'}, text || 'No data in this period.');

  /** Horizontal bars: rows of {stage, value, text}; max is the value of a full bar. */
  function bars(rows, max, summary) {
    const rowH = 30;
    const left = 120;
    const width = 560;
    const room = width - left - 170;
    const svg = s('svg', {viewBox: `0 0 ${width} ${rows.length * rowH + 6}`, class: 'bars', role: 'img',
      'aria-label': summary});
    rows.forEach((r, i) => {
      const y = i * rowH + 4;
      const w = max > 0 ? Math.max((r.value / max) * room, r.value > 0 ? 2 : 0) : 0;
      svg.append(
        s('text', {x: left - 8, y: y + 16, 'text-anchor': 'end', class: 'axis'}, label(r.stage)),
        s('rect', {x: left, y: y + 2, width: room, height: rowH - 10, class: 'track'}),
        s('rect', {x: left, y: y + 2, width: w, height: rowH - 10, fill: colour(r.stage), class: 'bar'},
          s('title', {}, `${label(r.stage)}: ${r.text}`)),
        s('text', {x: left + room + 8, y: y + 16, class: 'value'}, r.text));
    });
    return svg;
  }

  function funnelChart(funnel) {
    if (!funnel.some((f) => f.reached)) return nothing();
    const rows = funnel.map((f) => ({stage: f.stage, value: f.reached, text: `${f.reached} reached · ${f.visitors} in it`}));
    const max = Math.max(...funnel.map((f) => f.reached));
    return bars(rows, max, 'Funnel: ' + rows.map((r) => `${label(r.stage)} ${r.value}`).join(', '));
  }

  function timeChart(times) {
    if (!times.length) return nothing();
    const order = (stage) => { const i = state.stages.indexOf(stage); return i < 0 ? 99 : i; };
    const sorted = [...times].sort((a, b) => order(a.stage) - order(b.stage));
    const single = (t) => (t.single ? `, ${t.single} on one touchpoint` : '');
    const rows = sorted.map((t) => ({stage: t.stage, value: t.median_seconds || 0,
      text: t.median_seconds === null ? `– (${t.single} on one touchpoint)`
        : `${duration(t.median_seconds)} (mean ${duration(t.mean_seconds)}, ${t.spans}×${single(t)})`}));
    const max = Math.max(...rows.map((r) => r.value));
    return bars(rows, max, 'Median time in stage: ' + rows.map((r) => `${label(r.stage)} ${r.text}`).join(', '));
  }

  /** Thumbs-up share per stage or per day, as bars (a day's bar takes the first colour). */
  function csatChart(rows, key) {
    if (!rows.length) return nothing('No rated replies in this period.');
    const named = rows.map((r) => ({stage: key === 'stage' ? r.stage : null, name: r[key], value: r.csat,
      text: `${pct(r.csat)} (${r.up} up, ${r.down} down)`}));
    const svg = bars(named.map((r) => ({...r, stage: r.stage || r.name})), 1,
      `CSAT per ${key}: ` + named.map((r) => `${key === 'stage' ? label(r.name) : r.name} ${r.text}`).join(', '));
    svg.classList.add(`csat-${key}`);
    return svg;
  }

  function ratesTable(rates) {
    if (!rates.some((r) => r.exchanges || r.conversations)) return nothing();
    const cell = (kind, value, count, of) => h('td', {},
      h('span', {class: 'rate-text'}, of ? [`${pct(value)} `, h('span', {class: 'muted'}, `(${count} of ${of})`)]
        : h('span', {class: 'muted'}, 'no data')),
      s('svg', {viewBox: '0 0 100 8', preserveAspectRatio: 'none', class: 'rate-bar', 'aria-hidden': 'true'},
        s('rect', {width: 100, height: 8, class: 'track'}),
        s('rect', {width: Math.round(value * 1000) / 10, height: 8, class: `bar ${kind}`})));
    return h('div', {class: 'table-wrap'}, h('table', {class: 'rates'},
      h('thead', {}, h('tr', {}, ['Stage', 'Handoff rate', 'Thumbs-down rate', 'Deflection'].map((name) =>
        h('th', {scope: 'col'}, name)), h('th', {scope: 'col', class: 'num'}, 'Conversations'),
      h('th', {scope: 'col', class: 'num'}, 'Replies'))),
      h('tbody', {}, rates.map((r) => h('tr', {},
        h('th', {scope: 'row'}, stageChip(r.stage)),
        cell('handoff', r.handoff_rate, r.handoffs, r.conversations),
        cell('down', r.thumbs_down_rate, r.thumbs_down, r.exchanges),
        cell('deflection', r.deflection, r.conversations - r.handoffs, r.conversations),
        h('td', {class: 'num'}, r.conversations),
        h('td', {class: 'num'}, r.exchanges))))));
  }

  /** Per proactive rule: shown → opened → moved to a later stage, each step with its share of the one before. */
  function proactiveTable(rows) {
    if (!rows.some((r) => r.shown)) return nothing('No proactive message shown in this period.');
    const share = (n, of) => h('td', {class: 'num'}, of ? `${n} (${pct(n / of)})` : `${n}`);
    return h('div', {class: 'table-wrap'}, h('table', {class: 'proactive'},
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Rule'), ['Shown', 'Opened', 'Dismissed', 'Then wrote',
        'Moved to a later stage'].map((name) => h('th', {scope: 'col', class: 'num'}, name)))),
      h('tbody', {}, rows.map((r) => h('tr', {},
        h('th', {scope: 'row'}, r.rule),
        h('td', {class: 'num'}, `${r.shown}`),
        share(r.opened, r.shown),
        share(r.dismissed, r.shown),
        share(r.conversations, r.opened),
        share(r.moved, r.opened))))));
  }

  function transitionTable(transitions, stages) {
    if (!transitions.length) return nothing('No stage changes in this period.');
    const counts = new Map(transitions.map((t) => [`${t.from}>${t.to}`, t.count]));
    const max = Math.max(...transitions.map((t) => t.count));
    const known = new Set(stages);
    const extra = transitions.flatMap((t) => [t.from, t.to]).filter((x) => !known.has(x));
    const names = [...stages, ...new Set(extra)];
    const from = names.filter((n) => transitions.some((t) => t.from === n));
    const to = names.filter((n) => transitions.some((t) => t.to === n));
    return h('div', {class: 'table-wrap'}, h('table', {class: 'matrix'},
      h('caption', {class: 'sr-only'}, 'Stage transitions: from (rows) to (columns)'),
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'From ↓ To →'),
        to.map((n) => h('th', {scope: 'col'}, label(n))))),
      h('tbody', {}, from.map((f) => h('tr', {}, h('th', {scope: 'row'}, label(f)),
        to.map((t) => {
          const n = counts.get(`${f}>${t}`) || 0;
          const level = n ? Math.max(1, Math.ceil((n / max) * 4)) : 0;
          return h('td', {class: `heat h${level}`, title: `${label(f)} → ${label(t)}: ${n}`}, n || '');
        }))))));
  }

  /** The smallest 1, 2 or 5 × 10^k at or above n (a round top for an axis). */
  function niceCeiling(n) {
    const power = 10 ** Math.floor(Math.log10(n));
    return [1, 2, 5, 10].map((m) => m * power).find((x) => x >= n);
  }

  function dailyChart(daily) {
    if (!daily.length) return [nothing()];
    const byDay = new Map();
    for (const d of daily) {
      if (!byDay.has(d.day)) byDay.set(d.day, {});
      byDay.get(d.day)[d.stage] = (byDay.get(d.day)[d.stage] || 0) + d.count;
    }
    const days = [];
    const first = new Date(`${[...byDay.keys()].sort()[0]}T00:00:00Z`);
    const last = new Date(`${[...byDay.keys()].sort().pop()}T00:00:00Z`);
    for (let d = first; d <= last && days.length < 366; d = new Date(d.getTime() + 86400000)) {
      days.push(d.toISOString().slice(0, 10));
    }
    const stages = [...new Set([...state.stages, ...daily.map((d) => d.stage)])]
      .filter((st) => daily.some((d) => d.stage === st));
    const totals = days.map((day) => Object.values(byDay.get(day) || {}).reduce((a, b) => a + b, 0));
    const max = niceCeiling(Math.max(...totals, 1));
    const width = 560;
    const height = 220;
    const left = 36;
    const bottom = 24;
    const plot = height - bottom - 8;
    const step = (width - left - 4) / days.length;
    const barW = Math.max(Math.min(step * 0.7, 48), 1);
    const svg = s('svg', {viewBox: `0 0 ${width} ${height}`, class: 'bars daily', role: 'img',
      'aria-label': 'Touchpoints per day: ' + days.map((d, i) => `${d} ${totals[i]}`).join(', ')});
    for (const tick of max % 2 ? [0, 1] : [0, 0.5, 1]) {
      const y = 8 + plot - tick * plot;
      svg.append(s('line', {x1: left, x2: width, y1: y, y2: y, class: 'grid'}),
        s('text', {x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis'}, Math.round(max * tick)));
    }
    const every = Math.ceil(days.length / 8);
    days.forEach((day, i) => {
      const x = left + i * step + (step - barW) / 2;
      let y = 8 + plot;
      for (const stage of stages) {
        const n = (byDay.get(day) || {})[stage] || 0;
        if (!n) continue;
        const hgt = (n / max) * plot;
        y -= hgt;
        svg.append(s('rect', {x, y, width: barW, height: hgt, fill: colour(stage), class: 'bar'},
          s('title', {}, `${day} · ${label(stage)}: ${n}`)));
      }
      if (i % every === 0) {
        svg.append(s('text', {x: x + barW / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis'}, day.slice(5)));
      }
    });
    const legend = h('ul', {class: 'legend', 'aria-label': 'Stages'}, stages.map((st) => h('li', {},
      s('svg', {viewBox: '0 0 10 10', width: 10, height: 10, 'aria-hidden': 'true'},
        s('rect', {width: 10, height: 10, fill: colour(st)})), label(st))));
    return [svg, legend];
  }

  function gapList(groups) {
    if (!groups.length) return nothing('No knowledge gaps in this period.');
    const reasonNames = {weak_retrieval: 'weak retrieval', thumbs_down: 'thumbs down', handoff: 'handoff'};
    const editor = state.user && state.user.role !== 'viewer';
    const sorted = [...groups].sort((a, b) => b.count - a.count);
    return h('ol', {class: 'gaps'}, sorted.map((g) => h('li', {class: 'gap'},
      h('div', {class: 'gap-head'}, h('span', {class: 'count'}, `${g.count}×`), stageChip(g.stage),
        h('span', {class: 'gap-q'}, g.question)),
      h('p', {class: 'reasons'}, Object.entries(g.reasons).sort((a, b) => b[1] - a[1])
        .map(([k, n]) => badge(`${reasonNames[k] || k} ${n}`, k === 'thumbs_down' ? 'down' : k === 'handoff'
          ? 'handoff' : 'low'))),
      g.examples.length > 1 || g.examples[0] !== g.question ? h('ul', {class: 'examples', 'aria-label': 'Examples'},
        g.examples.map((q) => h('li', {}, q))) : null,
      editor ? h('button', {type: 'button', class: 'quiet', onclick: () => writeAnswerFor(g.question)},
        'Write an answer') : null)));
  }

  function writeAnswerFor(question) {
    location.hash = '#/answers';
    show('answers');
    const form = $('answer-new');
    form.elements.question.value = question;
    form.elements.answer.focus();
  }

  // ---- wiring ----

  function init() {
    $('signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token').value.trim();
      if (token) signIn(token);
    });
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    const filters = $('filters');
    const apply = () => { state.filters = readFilters(); state.offset = 0; loadList(); };
    filters.addEventListener('submit', (event) => { event.preventDefault(); apply(); });
    filters.addEventListener('change', (event) => { if (event.target.name !== 'q') apply(); });
    filters.addEventListener('reset', () => setTimeout(apply));
    $('prev').addEventListener('click', () => { state.offset = Math.max(state.offset - state.limit, 0); loadList(); });
    $('next').addEventListener('click', () => { state.offset += state.limit; loadList(); });
    $('page-size').addEventListener('change', (event) => {
      state.limit = Number(event.target.value); state.offset = 0; loadList();
    });
    $('range').addEventListener('submit', (event) => { event.preventDefault(); loadAnalytics(); });
    $('bulk').addEventListener('submit', bulkChange);
    $('notify-on').addEventListener('click', async () => {
      if (canNotify()) await Notification.requestPermission();
      showNotifyState();
    });
    $('sound-on').checked = soundOn();
    $('sound-on').addEventListener('change', (event) => {
      try { localStorage.setItem(SOUND_KEY, event.target.checked ? 'on' : 'off'); } catch (_e) { /* this tab only */ }
      if (event.target.checked) chime();
    });
    showNotifyState();
    untilFollows($('bulk-status'), $('bulk').querySelector('.until'), $('bulk-until'));
    $('pick-all').addEventListener('change', (event) => {
      const on = event.target.checked;
      for (const box of $('conversation-table').tBodies[0].querySelectorAll('td.pick input')) {
        if (box.checked !== on) { box.checked = on; box.dispatchEvent(new Event('change')); }
      }
    });
    $('answer-new').addEventListener('submit', createAnswer);
    $('canned-new').addEventListener('submit', createCanned);
    $('export-csv').addEventListener('click', () => exportList('csv'));
    $('export-jsonl').addEventListener('click', () => exportList('jsonl'));
    window.addEventListener('hashchange', route);
    window.addEventListener('offline', () => { // drop the live stream now; resume from the last id when back
      if (live.ctl) live.ctl.abort();
      live.ctl = null;
      clearTimeout(live.timer);
      $('live-state').textContent = 'Offline: live updates resume when the connection is back.';
    });
    window.addEventListener('online', () => { live.retry = 0; if (state.user) listenLive(); });
    const saved = store.get();
    if (saved) signIn(saved);
    else signOut();
  }

  init();
})();
