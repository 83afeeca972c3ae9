// raftkv web console. Plain JavaScript, no library. Every call goes to the
// node that served this page, by a relative URL ("../status" from /ui/),
// so the console works over HTTP and HTTPS and behind a proxy that mounts
// the node under a path. The API checks every call's role; this script
// only hides what the token may not do. Text is inserted with textContent,
// never as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'raftkv.token'; // sessionStorage only: gone with the tab
  const PAGE_LIMIT = 100;           // keys and prefixes per listing page
  const TAIL_MAX = 200;             // change-feed lines kept on screen
  const POLL_MS = 1000;             // cluster page refresh
  const CALL_TIMEOUT_MS = 5000;     // any call but the change feed
  const NODES_TIMEOUT_MS = 2000;    // /nodes through the leader, before asking this node
  const TAIL_RECONNECTS = 10000;    // change-feed reconnects before giving up
  const LAG_WARN = 64;              // entries behind: "lagging" (the learner promotion bound)

  const $ = (id) => document.getElementById(id);

  const state = {
    role: '',        // "read", "write" or "admin" once known
    view: '',        // "cluster" or "keys"
    prefix: '',      // the key browser's prefix
    cursor: '',      // next page's cursor, "" when none
    listGen: 0,      // drops answers of listings that were replaced
    pages: 0,        // pages shown of the current listing
    poll: 0,         // cluster poll timer
    pollGen: 0,
    tail: null,      // the running change feed
    viewed: null,    // {key, mod_index, lease, binary} of the open key
    openGen: 0,      // drops answers for a key opened before the last
    relist: 0,       // timer of a listing refresh after a change
  };

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  // api calls the node. opts: body, headers, signal, timeout (ms; 0: none,
  // for streams). A non-2xx answer throws ApiError with the JSON error's
  // code; a 401 also asks for a token.
  async function api(method, path, opts = {}) {
    const headers = Object.assign({}, opts.headers);
    const t = token();
    if (t) headers['Authorization'] = 'Bearer ' + t;
    const signals = [];
    if (opts.signal) signals.push(opts.signal);
    const timeout = opts.timeout === undefined ? CALL_TIMEOUT_MS : opts.timeout;
    if (timeout > 0) signals.push(AbortSignal.timeout(timeout));
    const res = await fetch('../' + path, {
      method,
      headers,
      body: opts.body,
      signal: signals.length ? AbortSignal.any(signals) : undefined,
      cache: 'no-store',
      credentials: 'omit',
    });
    if (res.ok) return res;
    let body = {};
    try {
      body = await res.json();
    } catch (e) {
      // not JSON: keep the status text
    }
    const err = new ApiError(res.status, body.code || '', body.error || res.status + ' ' + res.statusText, body);
    if (res.status === 401) askToken(t ? 'The node refused that token.' : '');
    throw err;
  }

  async function getJSON(path, opts) {
    const res = await api('GET', path, opts);
    return res.json();
  }

  const enc = encodeURIComponent; // a key's %2F is a literal "/" to the node

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setStatus(id, text, kind) {
    const p = $(id);
    p.textContent = text;
    p.dataset.kind = kind || '';
  }

  function banner(text) {
    const b = $('banner');
    b.textContent = text || '';
    b.hidden = !text;
  }

  // ---- authentication ----

  function askToken(message) {
    state.role = '';
    stopPoll();
    stopTail();
    for (const id of ['cluster', 'keys']) $(id).hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  async function start() {
    let who;
    try {
      const res = await api('GET', 'auth/whoami');
      $('node-id').textContent = 'node ' + (res.headers.get('X-Raft-Served-By') || '?');
      who = await res.json();
    } catch (e) {
      if (e.status !== 401) banner('This node does not answer: ' + e.message);
      return;
    }
    state.role = who.role;
    const canWrite = who.role === 'write' || who.role === 'admin';
    document.body.dataset.canWrite = canWrite ? 'yes' : 'no';
    for (const e of document.querySelectorAll('.write-only')) e.hidden = !canWrite;
    $('view-value').readOnly = true;
    $('whoami').textContent = who.auth ? 'token role: ' + who.role : 'authentication off';
    $('signout').hidden = !token();
    $('login').hidden = true;
    banner('');
    startPoll(); // on every page: the banner warns of a lost leader or quorum there too
    route();
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    start();
  });

  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  // ---- navigation: #/cluster, #/keys/<prefix> ----

  function route() {
    if (!state.role) return;
    const h = location.hash;
    if (h.startsWith('#/keys/')) {
      let prefix = '';
      try {
        prefix = decodeURIComponent(h.slice('#/keys/'.length));
      } catch (e) {
        prefix = '';
      }
      show('keys');
      openPrefix(prefix);
    } else {
      show('cluster');
    }
  }

  function show(view) {
    if (view !== 'keys') stopTail();
    state.view = view;
    $('cluster').hidden = view !== 'cluster';
    $('keys').hidden = view !== 'keys';
    $('nav-cluster').classList.toggle('current', view === 'cluster');
    $('nav-keys').classList.toggle('current', view === 'keys');
  }

  window.addEventListener('hashchange', route);

  // ---- cluster page ----

  function stopPoll() {
    clearTimeout(state.poll);
    state.pollGen++;
  }

  function startPoll() {
    stopPoll();
    const gen = state.pollGen;
    const tick = async () => {
      await refreshCluster(gen);
      if (gen === state.pollGen) state.poll = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  async function refreshCluster(gen) {
    let status = null;
    let nodes = null;
    let stale = false;
    let err = null;
    try {
      status = await getJSON('status');
    } catch (e) {
      err = e;
    }
    try {
      // The leader's view (forwarded). Its probes take at most 1 s; a
      // leader that is gone would hold the call for the forward's whole
      // deadline, so give up sooner and ask this node instead; with no
      // leader known, ask this node at once.
      if (status && !status.leader_id) throw new Error('no leader');
      nodes = await getJSON('nodes', { timeout: NODES_TIMEOUT_MS });
    } catch (e) {
      if (e.status === 401) return;
      try {
        nodes = await getJSON('nodes?stale'); // no leader: this node's own view
        stale = true;
      } catch (e2) {
        err = err || e2;
      }
    }
    if (gen !== state.pollGen) return;
    renderCluster(status, nodes, stale, err);
  }

  function ms(v) {
    if (v === null || v === undefined) return '—';
    return v < 1000 ? v.toFixed(0) + ' ms' : (v / 1000).toFixed(1) + ' s';
  }

  function opt(v) {
    return v === null || v === undefined ? '—' : v;
  }

  function renderCluster(status, nodes, stale, err) {
    const problems = [];
    if (!status && !nodes) {
      problems.push('This node does not answer: ' + (err ? err.message : 'no answer'));
    }
    if (status && !status.leader_id) {
      problems.push('No leader: writes and linearizable reads wait until one is elected (term ' + status.term + ').');
    }
    if (nodes) {
      const voters = nodes.filter((n) => n.suffrage === 'voter');
      const up = voters.filter((n) => n.reachable).length;
      const need = Math.floor(voters.length / 2) + 1;
      if (voters.length > 0 && up < need) {
        problems.push('No quorum: ' + up + ' of ' + voters.length + ' voters answer; ' + need + ' are needed.');
      }
    }
    banner(problems.join(' '));

    if (status) {
      $('node-id').textContent = 'node ' + status.id;
      $('cluster-summary').textContent =
        'This node: ' + status.id + ' (' + status.state.toLowerCase() + ') · leader: ' + (status.leader_id || 'none') +
        ' · term ' + status.term + ' · commit ' + status.commit_index + ' · applied ' + status.applied_index +
        ' · ' + status.keys + ' keys, ' + status.data_bytes + ' bytes' +
        (stale ? ' · members as this node sees them (no leader to ask)' : ' · members as the leader sees them');
    }
    const tbody = $('members').tBodies[0];
    tbody.textContent = '';
    for (const n of nodes || []) {
      let role = n.state ? n.state.toLowerCase() : '—'; // did not answer: its state is unknown
      if (n.leader) role = 'leader';
      else if (n.suffrage === 'learner') role = 'learner';
      let health = 'unreachable';
      if (n.reachable) health = n.lag !== null && n.lag > LAG_WARN ? 'lagging' : 'ok';
      const tr = el('tr');
      tr.dataset.node = n.id;
      tr.dataset.role = role;
      tr.dataset.health = health;
      if (n.leader) tr.className = 'leader';
      tr.append(
        el('td', (n.leader ? '★ ' : '') + n.id),
        el('td', role, 'role'),
        el('td', n.suffrage),
        el('td', health, 'health ' + health),
        el('td', opt(n.term)),
        el('td', opt(n.commit_index)),
        el('td', opt(n.applied_index)),
        el('td', opt(n.lag)),
        el('td', ms(n.last_contact_ms)),
        el('td', n.http_addr || '—'),
      );
      tbody.append(tr);
    }
  }

  // ---- key browser ----

  function openPrefix(prefix) {
    const changed = prefix !== state.prefix || !state.tail;
    state.prefix = prefix;
    renderCrumbs();
    if (changed) {
      $('new-key').value = prefix;
      setStatus('create-status', '', '');
    }
    listKeys(true);
    if (changed) startTail(prefix);
  }

  function renderCrumbs() {
    const nav = $('crumbs');
    nav.textContent = '';
    const root = el('a', '(all keys)');
    root.href = '#/keys/';
    nav.append(root);
    let acc = '';
    for (const part of state.prefix.split('/')) {
      if (part === '' && acc === state.prefix) break;
      acc += part;
      if (acc.length < state.prefix.length) acc += '/';
      const a = el('a', part + (acc.endsWith('/') ? '/' : ''));
      a.href = '#/keys/' + enc(acc);
      nav.append(' ', a);
    }
  }

  async function listKeys(reset) {
    const gen = ++state.listGen;
    if (reset) {
      state.cursor = '';
      state.pages = 0;
    }
    let q = 'kv/' + enc(state.prefix) + '?recurse&separator=/&limit=' + PAGE_LIMIT;
    if (state.cursor) q += '&after=' + enc(state.cursor);
    let page;
    try {
      page = await getJSON(q);
    } catch (e) {
      if (gen !== state.listGen) return;
      if (e.code === 'bad_cursor') return listKeys(true);
      setStatus('list-status', 'Listing failed: ' + e.message, 'error');
      return;
    }
    if (gen !== state.listGen) return;
    const tbody = $('key-list').tBodies[0];
    if (reset) tbody.textContent = '';
    // Prefixes and items come in one key order: merge them.
    const rows = (page.prefixes || []).map((p) => ({ prefix: p }))
      .concat(page.items.map((it) => ({ item: it })))
      .sort((a, b) => {
        const ka = a.prefix !== undefined ? a.prefix : a.item.key;
        const kb = b.prefix !== undefined ? b.prefix : b.item.key;
        return ka < kb ? -1 : ka > kb ? 1 : 0;
      });
    for (const r of rows) tbody.append(r.prefix !== undefined ? prefixRow(r.prefix) : itemRow(r.item));
    state.pages++;
    state.cursor = page.more ? page.next : '';
    $('more').hidden = !page.more;
    const shown = tbody.rows.length;
    setStatus('list-status', shown === 0 ? 'No keys under this prefix.' :
      shown + ' shown' + (page.more ? ', more follow' : '') + ' · read at index ' + page.index, '');
  }

  function prefixRow(p) {
    const tr = el('tr', null, 'prefix');
    tr.dataset.prefix = p;
    const a = el('a', p.slice(state.prefix.length));
    a.href = '#/keys/' + enc(p);
    const td = el('td');
    td.append(a);
    tr.append(td, el('td', 'prefix', 'muted'), el('td', ''), el('td', ''));
    return tr;
  }

  function preview(it) {
    if (it.value_base64 !== undefined) return '(binary, ' + atob(it.value_base64).length + ' bytes)';
    const v = it.value || '';
    return v.length > 60 ? v.slice(0, 60) + '…' : v;
  }

  function itemRow(it) {
    const tr = el('tr');
    tr.dataset.key = it.key;
    const a = el('a', it.key.slice(state.prefix.length) || it.key);
    a.href = '#/keys/' + enc(state.prefix);
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      openKey(it.key);
    });
    const td = el('td');
    td.append(a);
    tr.append(td, el('td', preview(it)), el('td', it.mod_index), el('td', it.ttl !== undefined ? ms(it.ttl) : ''));
    return tr;
  }

  $('more').addEventListener('click', () => listKeys(false));
  $('refresh').addEventListener('click', () => listKeys(true));

  function hex(b64) {
    const bin = atob(b64);
    const out = [];
    for (let i = 0; i < bin.length; i += 16) {
      const row = [];
      for (let j = i; j < Math.min(i + 16, bin.length); j++) row.push(bin.charCodeAt(j).toString(16).padStart(2, '0'));
      out.push(i.toString(16).padStart(8, '0') + '  ' + row.join(' '));
    }
    return out.join('\n');
  }

  async function openKey(key, keepStatus) {
    const gen = ++state.openGen;
    $('viewer').hidden = false;
    $('viewer').dataset.state = 'loading';
    $('view-key').textContent = key;
    $('delete-confirm').hidden = true;
    if (!keepStatus) setStatus('view-status', '', '');
    setStatus('view-changed', '', '');
    let v;
    try {
      v = await getJSON('get?key=' + enc(key));
    } catch (e) {
      if (gen !== state.openGen) return;
      $('viewer').dataset.state = 'loaded';
      state.viewed = null;
      $('view-meta').textContent = '';
      $('view-value').value = '';
      $('view-hex').hidden = true;
      setStatus('view-status', e.code === 'key_not_found' ? 'This key does not exist (any more).' : e.message, 'error');
      return;
    }
    if (gen !== state.openGen) return; // another key was opened since
    $('viewer').dataset.state = 'loaded';
    const binary = v.value_base64 !== undefined;
    state.viewed = { key, mod_index: v.mod_index, lease: v.lease, binary };
    $('view-meta').textContent = 'created at ' + v.create_index + ' · mod_index ' + v.mod_index +
      (v.ttl !== undefined ? ' · TTL left ' + ms(v.ttl) : '') + (v.lease !== undefined ? ' · lease ' + v.lease : '') +
      (binary ? ' · binary: shown as hex, not editable here' : '');
    $('view-hex').hidden = !binary;
    $('view-hex').textContent = binary ? hex(v.value_base64) : '';
    $('view-value').hidden = binary;
    $('view-value').value = binary ? '' : v.value;
    const canWrite = document.body.dataset.canWrite === 'yes';
    $('view-value').readOnly = !canWrite || binary;
    $('save').disabled = binary;
  }

  // keepExpiry keeps a key's expiry across an edit: a PUT without ttl or
  // lease makes a key permanent, so an edit re-sends the key's own TTL
  // (which restarts it) or its shared lease.
  async function keepExpiry(v) {
    if (v.lease === undefined) return '';
    const l = await getJSON('leases/' + v.lease);
    return l.of_key ? '&ttl=' + l.granted_ttl + 'ms' : '&lease=' + v.lease;
  }

  function conflict(e, v, what) {
    const now = e.body && e.body.index !== undefined ? e.body.index : '?';
    return what + ' not done: the key changed since you opened it (mod_index ' + v.mod_index + ', now ' +
      (now === 0 ? 'deleted' : now) + '). Your text is kept; open the key again to see the current value.';
  }

  $('save').addEventListener('click', async () => {
    const v = state.viewed;
    if (!v || v.binary) return;
    $('save').disabled = true; // one save at a time: a second would race the first's cas
    try {
      const extra = await keepExpiry(v);
      const res = await api('PUT', 'kv/' + enc(v.key) + '?cas=' + v.mod_index + extra, { body: $('view-value').value });
      const out = await res.json();
      v.mod_index = out.index; // the write's index is the key's mod_index now
      setStatus('view-status', 'Saved at index ' + out.index + '.', 'ok');
      await openKey(v.key, true);
    } catch (e) {
      setStatus('view-status', e.code === 'cas_failed' ? conflict(e, v, 'Save') : 'Save failed: ' + e.message, 'error');
    } finally {
      $('save').disabled = !!(state.viewed && state.viewed.binary);
    }
  });

  $('delete').addEventListener('click', () => {
    if (state.viewed) $('delete-confirm').hidden = false;
  });

  $('delete-confirm').addEventListener('click', async () => {
    const v = state.viewed;
    $('delete-confirm').hidden = true;
    if (!v) return;
    try {
      const res = await api('DELETE', 'kv/' + enc(v.key) + '?cas=' + v.mod_index);
      const out = await res.json();
      setStatus('view-status', 'Deleted at index ' + out.index + '.', 'ok');
      state.viewed = null;
      listKeys(true);
    } catch (e) {
      setStatus('view-status', e.code === 'cas_failed' ? conflict(e, v, 'Delete') : 'Delete failed: ' + e.message, 'error');
    }
  });

  $('create-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('new-key').value;
    const ttl = $('new-ttl').value.trim();
    let q = 'kv/' + enc(key) + '?cas=0'; // only if absent: never overwrites
    if (ttl) q += '&ttl=' + enc(ttl);
    try {
      const res = await api('PUT', q, { body: $('new-value').value });
      const out = await res.json();
      setStatus('create-status', 'Created ' + key + ' at index ' + out.index + '.', 'ok');
      $('new-value').value = '';
      listKeys(true);
      openKey(key);
    } catch (e) {
      const msg = e.code === 'cas_failed' ? key + ' already exists (mod_index ' + e.body.index + '): open it to edit it.' : e.message;
      setStatus('create-status', 'Not created: ' + msg, 'error');
    }
  });

  // ---- live tail of the change feed ----
  // EventSource cannot send an Authorization header, so the stream is read
  // with fetch and parsed here; a reconnect resumes after the last event
  // id (Last-Event-ID), so nothing is missed or shown twice.

  function stopTail() {
    if (state.tail) state.tail.ctl.abort();
    state.tail = null;
  }

  function startTail(prefix) {
    stopTail();
    const t = { ctl: new AbortController(), prefix, lastId: '' };
    state.tail = t;
    $('tail').textContent = '';
    $('tail-prefix').textContent = prefix || '(all keys)';
    runTail(t);
  }

  function tailState(t, text) {
    if (state.tail === t) $('tail-state').textContent = text;
  }

  async function runTail(t) {
    let failures = 0;
    for (let i = 0; i < TAIL_RECONNECTS && state.tail === t; i++) {
      try {
        const headers = t.lastId ? { 'Last-Event-ID': t.lastId } : {};
        const res = await api('GET', 'watch/' + enc(t.prefix), { headers, signal: t.ctl.signal, timeout: 0 });
        tailState(t, '● live');
        failures = 0;
        await readEvents(t, res.body);
      } catch (e) {
        if (t.ctl.signal.aborted || e.status === 401) return;
        if (e.code === 'history_compacted' || e.code === 'future_index') {
          t.lastId = ''; // cannot resume there: start from now, and re-read the keys
          listKeys(true);
        }
        failures++;
      }
      if (state.tail !== t) return;
      const delay = Math.min(5000, 250 * 2 ** Math.min(failures, 5));
      tailState(t, 'reconnecting…');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async function readEvents(t, body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { id: null, event: '', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          dispatch(t, ev);
          ev = { id: null, event: '', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue; // comment (keep-alive)
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'data') ev.data.push(val);
        else if (field === 'event') ev.event = val;
        else if (field === 'id') ev.id = val;
      }
    }
  }

  function dispatch(t, ev) {
    if (ev.id !== null) t.lastId = ev.id;
    if (ev.data.length === 0 || state.tail !== t) return;
    let d;
    try {
      d = JSON.parse(ev.data.join('\n'));
    } catch (e) {
      return;
    }
    if (ev.event === 'reset') {
      t.lastId = ''; // the node dropped events we had not read: start again from now
      tailState(t, 'fell behind; re-reading the keys');
      listKeys(true);
      return;
    }
    if (ev.event !== 'put' && ev.event !== 'delete' && ev.event !== 'expire') return;
    const li = el('li');
    li.dataset.event = ev.event;
    li.dataset.key = d.key;
    const value = d.value_base64 !== undefined ? '(binary)' : d.value !== undefined ? JSON.stringify(d.value) : '';
    li.append(
      el('span', new Date().toLocaleTimeString(), 'muted'), ' ',
      el('span', ev.event, 'ev ' + ev.event), ' ',
      el('code', d.key), value ? ' = ' : '', value ? el('code', value.length > 80 ? value.slice(0, 80) + '…' : value) : '',
      el('span', ' @' + d.mod_index, 'muted'),
    );
    const ol = $('tail');
    ol.prepend(li);
    while (ol.children.length > TAIL_MAX) ol.lastChild.remove();
    if (state.viewed && state.viewed.key === d.key && d.mod_index !== state.viewed.mod_index) {
      setStatus('view-changed', 'This key changed (' + ev.event + ' at ' + d.mod_index + ') since you opened it.', 'warn');
    }
    // Keep the first page current; a longer listing keeps its place.
    if (state.pages <= 1) {
      clearTimeout(state.relist);
      state.relist = setTimeout(() => listKeys(true), 300);
    }
  }

  start();
})();
