// The Tern web client: state and page. It speaks PROTOCOL.md 2 and 3
// through conn.js. All user content reaches the page as text
// (`textContent`), never as HTML.

import { api, ApiError, Session } from './conn.js';
import { el, listTime, randomId } from './format.js';
import { initPanels, panels } from './panels.js';
import { initBubbles, mentionsMe, msgItem, preview, snippet, withDays } from './bubbles.js';
import { avatar, canRecord, checkFile, formatDuration, formatSize, imageSize, initMedia, isImageType, record, resetMedia, upload, uploadError } from './media.js';
import { onNotificationClick, registerWorker, subscribePush, unsubscribePush } from './push.js';

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;

// ---- state ----------------------------------------------------------

let me = null; // user id
let token = null;
let session = null;
let serverTotal = 0; // total_unread, kept exact by local deltas
const convs = new Map(); // conv id -> Conv
const presence = new Map(); // user -> bool
const groups = new Map(); // group id -> {name, owner, members}
let friends = { friends: [], incoming: [], outgoing: [] };
let openConv = null;
let outbox = []; // sends not yet answered: {cid, conv, to|group, kind, content, ts}
let lastTypingSent = 0;
const typingTimers = new Map(); // conv -> {user, timer}
const ackTimers = new Map(); // conv -> timer
let menuTarget = null;
const names = new Map(); // user -> display name, once fetched
const nameFetches = new Set(); // users whose name is being fetched
// /web/settings.json; these defaults are the server's own until it answers.
let settings = { recall_window_secs: 120, edit_window_secs: 172800, media_max_bytes: 26214400 };
const avatars = new Map(); // user -> avatar media id ('' for none), once known
// Files being uploaded (and refused ones, until dismissed): {lid, conv,
// kind, name, size, progress, error, abort, li}. Sent once uploaded.
let uploads = [];
let recording = null; // a voice note being recorded: {conv, h, hold, ...}
let unseenBelow = 0; // messages that arrived below the scrolled-up view
let compose = null; // {mode: 'reply'|'edit', m}: what the message box is for
const blocked = new Set(); // users this user blocked
const QUICK_EMOJIS = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
const MUTED_FOREVER = 32503680000000; // year 3000: muted until unmuted


/** This tab's device: kept across reloads, different in every tab. */
function device() {
  let d = store.getItem('tern.device');
  if (!d) {
    d = `web-${randomId().replace(/-/g, '').slice(0, 12)}`;
    store.setItem('tern.device', d);
  }
  return d;
}

function dmConv(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

function conv(id, peer, group) {
  let c = convs.get(id);
  if (!c) {
    if (!peer && !group) {
      if (id.startsWith('dm:')) {
        const [, a, b] = id.split(':');
        peer = a === me ? b : a;
      } else if (id.startsWith('group:')) {
        group = id.slice(6);
      }
    }
    c = {
      id,
      peer: peer || null,
      group: group || null,
      max_seq: 0, // highest seq known to exist
      syncMax: 0, // max_seq at the last sync: unread up to it is the server's
      read_seq: 0,
      unread: 0,
      last: null,
      updated_at: 0,
      msgs: new Map(), // seq -> msg
      loaded: false, // newest page fetched
      complete: false, // nothing older to fetch
      loading: false,
      failed: false, // the last page fetch was refused or lost
      delivered: 0, // peer's delivered position (1:1)
      peerRead: 0, // peer's read position (1:1)
      muted_until: 0, // this user's settings of the conversation (5.3)
      pinned: false,
      mentioned: false, // an unread message mentions this user
      hit: 0, // a search hit to show when the conversation opens
    };
    convs.set(id, c);
  }
  return c;
}

function saveOutbox() {
  const items = outbox.map(({ inflight, ...item }) => item);
  store.setItem(`tern.outbox.${me}`, JSON.stringify(items));
}

function setUnread(c, n) {
  serverTotal += n - c.unread;
  c.unread = n;
}

// ---- start ----------------------------------------------------------

function init() {
  registerWorker();
  onNotificationClick((id) => {
    if (me && /^(dm|group):/.test(id)) open(id);
  });
  token = store.getItem('tern.token');
  me = store.getItem('tern.user');
  if (token && me) {
    enter();
  } else {
    showLogin('');
  }
  wireLogin();
  wireApp();
}

function showLogin(msg) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg;
  $('login-user').focus();
}

function wireLogin() {
  const creds = () => ({ user: $('login-user').value.trim(), password: $('login-pass').value });
  async function login() {
    const { user, password } = creds();
    const r = await api('POST', '/v1/sessions', null, { user, password });
    store.setItem('tern.token', r.token);
    store.setItem('tern.user', user);
    token = r.token;
    me = user;
    enter();
  }
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      await login();
    } catch (e) {
      $('login-error').textContent =
        e.code === 'bad_credentials' ? 'Wrong user id or password.' : e.message;
    }
  });
  $('register-btn').addEventListener('click', async () => {
    $('login-error').textContent = '';
    if (!$('login-form').reportValidity()) return;
    const { user, password } = creds();
    try {
      await api('POST', '/v1/users', null, { user, password });
      await login();
    } catch (e) {
      $('login-error').textContent =
        e.code === 'user_exists' ? 'That user id is taken.' : e.message;
    }
  });
}

function enter() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('me-name').textContent = me;
  $('me-name').title = me;
  nameOf(me);
  try {
    outbox = JSON.parse(store.getItem(`tern.outbox.${me}`) || '[]');
  } catch (e) {
    outbox = [];
  }
  session = new Session(token, device(), {
    onOpen: () => {},
    onFrame,
    onState,
    onFatal,
  });
  session.start();
  refreshFriends();
  fetch('/web/settings.json')
    .then((r) => (r.ok ? r.json() : null))
    .then((v) => {
      if (v) settings = { ...settings, ...v };
    })
    .catch(() => {});
  renderNotifyButton();
  renderMe();
  renderConvList();
  renderConv();
  subscribePush(token);
  // A notification's click opened this page on a conversation.
  const h = location.hash.match(/^#conv=([^&]+)$/);
  if (h) {
    history.replaceState(null, '', location.pathname);
    const id = decodeURIComponent(h[1]);
    if (/^(dm|group):/.test(id)) open(id);
  }
}

function logoutLocal(msg) {
  if (session) session.stop();
  session = null;
  for (const u of uploads) u.abort?.();
  uploads = [];
  if (recording) finishRecording(false);
  resetMedia();
  for (const k of Object.keys(store)) {
    if (k.startsWith('tern.') && k !== 'tern.device') store.removeItem(k);
  }
  convs.clear();
  presence.clear();
  outbox = [];
  openConv = null;
  serverTotal = 0;
  token = null;
  showLogin(msg);
  $('login-user').value = me || '';
  me = null;
}

function onState(s) {
  $('conn-state').textContent = s === 'online' ? '' : s === 'connecting' ? 'connecting…' : 'offline';
  $('me-dot').classList.toggle('online', s === 'online');
  document.body.dataset.conn = s;
}

function onFatal(code) {
  if (code === 4009) {
    toast('This tab was signed in again elsewhere with the same device.');
    document.body.dataset.conn = 'replaced';
    return;
  }
  logoutLocal('Your session ended: log in again.');
}

// ---- frames ---------------------------------------------------------

function onFrame(f) {
  switch (f.type) {
    case 'msg':
      onMsg(f.msg, true);
      break;
    case 'offline_done':
      resume();
      break;
    case 'receipt':
      onReceipt(f);
      break;
    case 'recalled':
      onRecalled(f);
      break;
    case 'typing':
      onTyping(f);
      break;
    case 'presence':
      presence.set(f.user, !!f.online);
      renderPresence();
      break;
    case 'friend':
      onFriend(f);
      break;
    case 'edited':
      onEdited(f);
      break;
    case 'reaction':
      onReaction(f);
      break;
    case 'conv_settings': {
      const c = conv(f.conv);
      c.muted_until = f.muted_until;
      c.pinned = f.pinned;
      renderConvList();
      panels.refresh();
      break;
    }
    case 'profile':
      names.set(f.user, f.name || f.user);
      avatars.set(f.user, f.avatar || '');
      scheduleNames();
      break;
    case 'notify': {
      const c = conv(f.conv);
      if (f.max_seq > c.max_seq) fillGap(c, f.max_seq + 1);
      break;
    }
    default:
      break;
  }
}

/** After the offline messages: conversations, gaps, then the outbox. */
async function resume() {
  try {
    const r = await session.request({ type: 'sync', since: 0, limit: 1000 });
    serverTotal = r.total_unread;
    for (const c of convs.values()) c.failed = false;
    for (const e of r.convs) {
      const c = conv(e.conv, e.peer, e.group);
      c.read_seq = Math.max(c.read_seq, e.read_seq);
      c.unread = e.unread;
      c.syncMax = e.max_seq;
      if (e.last && (!c.last || e.last.seq >= c.last.seq)) c.last = e.last;
      c.updated_at = Math.max(c.updated_at, e.updated_at);
      // Receipts of a 1:1 conversation as the server holds them: a new tab
      // or device shows the same marks as the one that was pushed them.
      if (e.peer_delivered_seq) c.delivered = Math.max(c.delivered, e.peer_delivered_seq);
      if (e.peer_read_seq) c.peerRead = Math.max(c.peerRead, e.peer_read_seq);
      c.muted_until = e.muted_until || 0;
      c.pinned = !!e.pinned;
      c.mentioned = !!e.mentioned;
      if (c.loaded && e.max_seq > c.max_seq) await fillGap(c, e.max_seq + 1);
      c.max_seq = Math.max(c.max_seq, e.max_seq);
    }
    serverTotal = r.total_unread;
    await askPresence();
    refreshFriends();
    refreshBlocks();
    await flushOutbox();
    if (openConv) markRead(convs.get(openConv));
    renderConvList();
    renderConv();
  } catch (e) {
    // The connection dropped meanwhile: the next auth starts over.
  }
}

async function askPresence() {
  const users = new Set();
  for (const c of convs.values()) if (c.peer && c.peer !== me) users.add(c.peer);
  if (users.size === 0) return;
  const r = await session.request({ type: 'presence', users: [...users].slice(0, 1000) });
  for (const [u, on] of Object.entries(r.online)) presence.set(u, on);
  renderPresence();
}

/**
 * Stores one message (from a push, a history page or a send answer),
 * dropping duplicates by msg_id. Returns whether it was new.
 */
function addMsg(m) {
  const c = conv(m.conv);
  const had = c.msgs.get(m.seq);
  if (had && had.msg_id === m.msg_id) {
    if (m.recalled && !had.recalled) {
      had.recalled = true;
      had.content = null;
    }
    // A history page is newer than what was pushed: its edit and its
    // reactions win.
    if (m.edited_at && !(had.edited_at >= m.edited_at)) {
      had.content = m.content;
      had.edited_at = m.edited_at;
    }
    if (m.reactions) had.reactions = m.reactions;
    return false;
  }
  c.msgs.set(m.seq, m);
  if (m.from !== me && m.seq > c.read_seq && m.seq > c.syncMax) setUnread(c, c.unread + 1);
  if (m.from !== me && m.seq > c.read_seq && mentionsMe(m)) c.mentioned = true;
  if (m.seq > c.max_seq) c.max_seq = m.seq;
  if (!c.last || m.seq >= c.last.seq) {
    c.last = m;
    c.updated_at = Math.max(c.updated_at, m.ts);
  }
  if (m.from === me && m.seq > c.read_seq) {
    // Sending moves one's own read position to the message.
    c.read_seq = m.seq;
    setUnread(c, 0);
  }
  if (m.group && m.kind === 'system' && groups.has(m.group)) groupInfo(m.group, true);
  return true;
}

async function onMsg(m, live) {
  const c = conv(m.conv);
  const gap = live && c.max_seq > 0 && m.seq > c.max_seq + 1;
  const before = c.max_seq;
  addMsg(m);
  const typing = typingTimers.get(c.id);
  if (typing && typing.user === m.from) {
    clearTimeout(typing.timer);
    typingTimers.delete(c.id);
    renderTyping();
  }
  if (gap) await fillGap(c, m.seq, before);
  scheduleAck(c);
  if (live && m.from !== me && m.kind !== 'system') notifyMsg(c, m);
  if (openConv === c.id) markRead(c);
  renderConvList();
  if (openConv === c.id) {
    if (live && m.from !== me && !atBottom()) unseenBelow += 1;
    renderMessages(c);
  }
}

/**
 * Fetches the messages between `after` (or the highest held) and `before`
 * (or up to the newest).
 */
async function fillGap(c, before, after) {
  let from = after ?? c.max_seq;
  while (before === undefined || from + 1 < before) {
    let r;
    const frame = { type: 'history', conv: c.id, after_seq: from, limit: 500 };
    if (before !== undefined) frame.before_seq = before;
    try {
      r = await session.request(frame);
    } catch (e) {
      return;
    }
    if (r.msgs.length === 0) break;
    for (const m of r.msgs) addMsg(m);
    from = r.msgs[r.msgs.length - 1].seq;
  }
  if (openConv === c.id) renderMessages(c);
  renderConvList();
}

/** One cumulative ack per conversation for a burst of pushes. */
function scheduleAck(c) {
  if (ackTimers.has(c.id)) return;
  ackTimers.set(
    c.id,
    setTimeout(() => {
      ackTimers.delete(c.id);
      session?.post({ type: 'ack', conv: c.id, seq: c.max_seq });
    }, 30),
  );
}

function onReceipt(f) {
  const c = conv(f.conv);
  if (f.by === me) {
    if (f.read_seq > c.read_seq) {
      c.read_seq = f.read_seq;
      if (c.read_seq >= c.max_seq) setUnread(c, 0);
      renderConvList();
    }
    return;
  }
  if (f.delivered_seq) c.delivered = Math.max(c.delivered, f.delivered_seq);
  if (f.read_seq) {
    c.peerRead = Math.max(c.peerRead, f.read_seq);
    c.delivered = Math.max(c.delivered, f.read_seq);
  }
  if (openConv === c.id) renderMessages(c);
}

function onRecalled(f) {
  const c = conv(f.conv);
  const m = c.msgs.get(f.seq);
  if (m) {
    m.recalled = true;
    m.content = null;
  }
  if (c.last && c.last.seq === f.seq) c.last = { ...c.last, recalled: true, content: null };
  renderConvList();
  if (openConv === c.id) renderMessages(c);
}

function onTyping(f) {
  if (f.user === me) return;
  const old = typingTimers.get(f.conv);
  if (old) clearTimeout(old.timer);
  typingTimers.set(f.conv, {
    user: f.user,
    timer: setTimeout(() => {
      typingTimers.delete(f.conv);
      renderTyping();
      renderConvList();
    }, 5000),
  });
  renderTyping();
  renderConvList();
}

/** The open conversation is read up to its newest message, if shown. */
function markRead(c) {
  if (!c || document.visibilityState !== 'visible' || !session?.online) return;
  if (c.max_seq <= c.read_seq) {
    if (c.unread) setUnread(c, 0);
    return;
  }
  const seq = c.max_seq;
  c.read_seq = seq;
  c.mentioned = false;
  setUnread(c, 0);
  renderConvList();
  session.request({ type: 'read', conv: c.id, seq }).catch(() => {
    // Offline: the next resume reads again.
  });
}

// ---- sending --------------------------------------------------------

function send(text) {
  const c = convs.get(openConv);
  if (!c || !text) return;
  if (compose?.mode === 'edit') {
    const m = compose.m;
    setCompose(null);
    if (text !== m.content) editMsg(m, text);
    return;
  }
  const item = {
    cid: randomId(),
    conv: c.id,
    kind: 'text',
    content: text,
    ts: Date.now(),
  };
  if (compose?.mode === 'reply') item.reply_to = compose.m.seq;
  if (c.group) {
    const mentions = mentionsIn(c, text);
    if (mentions.length) item.mentions = mentions;
  }
  setCompose(null);
  enqueue(c, item);
}

/** Puts a send in the outbox (kept across reloads) and tries it. */
function enqueue(c, item) {
  if (c.group) item.group = c.group;
  else item.to = c.peer;
  outbox.push(item);
  saveOutbox();
  unseenBelow = 0;
  if (openConv === c.id) renderMessages(c, { toBottom: true });
  trySend(item);
}

/** What a sent message holds: the content sent, with what the upload told. */
function contentOf(item) {
  return item.local ? { ...item.content, ...item.local } : item.content;
}

// ---- attachments and voice notes --------------------------------------

/** Whether files may be sent to the open conversation now. */
function canAttach() {
  return !!openConv && !$('text').disabled;
}

function attachFiles(list) {
  const c = canAttach() && convs.get(openConv);
  if (!c) return;
  for (const file of list) startUpload(c, file);
}

/**
 * Uploads `file` to send it to `c` as `opts.kind` (else `image` for the
 * image types the server takes, `file` for the rest), with a pending
 * bubble that shows the progress, an error in words, and a cancel button.
 */
function startUpload(c, file, opts = {}) {
  const checked = checkFile(file);
  const mime = opts.mime || checked.mime;
  const name = opts.name ?? file.name;
  const kind = opts.kind || (isImageType(mime) ? 'image' : 'file');
  const u = { lid: randomId(), conv: c.id, kind, name, size: file.size, progress: 0, error: checked.error || null };
  uploads.push(u);
  if (!u.error) {
    const dims = kind === 'image' ? imageSize(file) : Promise.resolve(null);
    const up = upload(file, mime, kind === 'voice' ? '' : name, (p) => {
      u.progress = p;
      drawUpload(u);
    });
    u.abort = up.abort;
    up.promise.then(
      async (r) => {
        const d = await dims;
        uploads = uploads.filter((x) => x !== u);
        const content = { media: r.media };
        if (kind === 'voice') content.duration = opts.duration;
        else content.name = name;
        if (d) Object.assign(content, d);
        const local = { url: r.url, size: r.size, mime: r.mime };
        enqueue(c, { cid: randomId(), conv: c.id, kind, content, local, ts: Date.now() });
      },
      (e) => {
        if (e.code === 'cancelled') uploads = uploads.filter((x) => x !== u);
        else u.error = uploadError(e, name);
        drawUpload(u);
        if (openConv === c.id) renderMessages(c);
      },
    );
  }
  unseenBelow = 0;
  if (openConv === c.id) renderMessages(c, { toBottom: true });
}

/** The pending bubble of an upload (one node per upload, updated in place). */
function uploadItem(u) {
  if (!u.li) {
    const li = el('li', 'msg mine upload');
    li.dataset.upload = u.lid;
    const bubble = el('div', 'bubble media');
    const row = el('div', 'up-row');
    const icon = el('span', 'file-icon', u.kind === 'image' ? 'IMG' : u.kind === 'voice' ? 'REC' : 'FILE');
    const body = el('div', 'grow');
    u.sizeEl = el('small', 'up-size');
    body.append(el('b', 'up-name', u.kind === 'voice' ? 'Voice message' : u.name), u.sizeEl);
    const cancel = el('button', 'icon-btn up-cancel', '×');
    cancel.type = 'button';
    cancel.addEventListener('click', (ev) => {
      ev.stopPropagation();
      if (!u.error) u.abort?.();
      uploads = uploads.filter((x) => x !== u);
      const c = convs.get(u.conv);
      if (c && openConv === c.id) renderMessages(c);
    });
    u.cancelEl = cancel;
    row.append(icon, body, cancel);
    const bar = el('div', 'bar');
    u.fillEl = el('span', 'fill');
    bar.append(u.fillEl);
    u.errorEl = el('p', 'error');
    u.errorEl.setAttribute('role', 'alert');
    bubble.append(row, bar, u.errorEl);
    li.append(bubble);
    u.li = li;
  }
  drawUpload(u);
  return u.li;
}

function drawUpload(u) {
  if (!u.li) return;
  u.li.classList.toggle('failed', !!u.error);
  u.fillEl.style.width = `${Math.round(u.progress * 100)}%`;
  u.sizeEl.textContent = u.error
    ? formatSize(u.size)
    : `${formatSize(Math.round(u.progress * u.size))} of ${formatSize(u.size)}`;
  u.errorEl.textContent = u.error || '';
  u.cancelEl.title = u.error ? 'Dismiss' : 'Cancel the upload';
  u.cancelEl.setAttribute('aria-label', u.cancelEl.title);
}

/** How long the microphone button is held for a hold-to-record note. */
const HOLD_MS = 450;

async function startRecording(hold) {
  const c = canAttach() && convs.get(openConv);
  if (!c || recording) return;
  const r = { conv: c.id, hold, h: null, cancelled: false, sendWhenReady: false, at: performance.now() };
  recording = r;
  $('rec-time').textContent = '0:00';
  $('rec-hint').textContent = hold ? 'Recording… release to send' : 'Recording… Send when done';
  document.body.classList.add('recording');
  $('recorder').hidden = false;
  try {
    r.h = await record((secs) => {
      $('rec-time').textContent = formatDuration(Math.floor(secs));
    });
  } catch (e) {
    if (recording === r) recording = null;
    showRecorder(false);
    toast(
      e.name === 'NotAllowedError'
        ? 'This page may not use the microphone (see the browser’s site settings).'
        : `Cannot record: ${e.message}`,
    );
    return;
  }
  if (r.cancelled) r.h.cancel();
  else if (r.sendWhenReady) finishRecording(true);
}

function showRecorder(on) {
  document.body.classList.toggle('recording', on);
  $('recorder').hidden = !on;
}

/** Ends the recording: sent as a voice note, or dropped. */
async function finishRecording(sendIt) {
  const r = recording;
  if (!r) return;
  if (!r.h) {
    // The microphone is still opening.
    if (sendIt) r.sendWhenReady = true;
    else {
      r.cancelled = true;
      recording = null;
      showRecorder(false);
    }
    return;
  }
  recording = null;
  showRecorder(false);
  const out = await r.h.stop();
  const c = convs.get(r.conv);
  if (!sendIt || !c) return;
  if (out.duration < 0.5 || out.blob.size === 0) {
    toast('Too short to send: hold the microphone button, or click it and then Send.');
    return;
  }
  const ext = out.mime.includes('ogg') ? 'ogg' : out.mime.includes('mp4') ? 'm4a' : 'webm';
  const file = new File([out.blob], `voice.${ext}`, { type: out.mime });
  startUpload(c, file, { kind: 'voice', mime: out.mime, duration: out.duration });
}

async function trySend(item) {
  if (!session?.online || item.inflight) return;
  item.inflight = true;
  const frame = { type: 'send', client_msg_id: item.cid, kind: item.kind, content: item.content };
  if (item.group) frame.group = item.group;
  else frame.to = item.to;
  if (item.reply_to) frame.reply_to = item.reply_to;
  if (item.mentions) frame.mentions = item.mentions;
  try {
    const r = await session.request(frame);
    outbox = outbox.filter((o) => o.cid !== item.cid);
    saveOutbox();
    const m = {
      msg_id: r.msg_id,
      conv: r.conv,
      seq: r.seq,
      from: me,
      kind: item.kind,
      content: contentOf(item),
      ts: r.ts,
      client_msg_id: item.cid,
    };
    if (item.reply_to) m.reply_to = item.reply_to;
    if (item.mentions) m.mentions = item.mentions;
    if (item.group) m.group = item.group;
    else m.to = item.to;
    const c = conv(r.conv);
    const gap = c.max_seq > 0 && r.seq > c.max_seq + 1;
    const before = c.max_seq;
    addMsg(m);
    if (gap) await fillGap(c, r.seq, before);
  } catch (e) {
    if (e.code === 'unavailable') {
      // Offline: sent again, same client_msg_id, after the next auth.
    } else if (e.code === 'rate_limited') {
      setTimeout(() => trySend(item), 1000);
    } else {
      outbox = outbox.filter((o) => o.cid !== item.cid);
      saveOutbox();
      toast(`Not sent: ${e.message}`);
    }
  } finally {
    item.inflight = false;
  }
  renderConvList();
  if (openConv === item.conv) renderMessages(conv(item.conv));
}

async function flushOutbox() {
  for (const item of [...outbox]) await trySend(item);
}

/** Hides a message from this user's own history, on every device. */
async function deleteForMe(m) {
  try {
    await session.request({ type: 'delete', conv: m.conv, seqs: [m.seq] });
  } catch (e) {
    toast(e.message);
    return;
  }
  const c = conv(m.conv);
  c.msgs.delete(m.seq);
  if (c.last && c.last.seq === m.seq) {
    const rest = [...c.msgs.keys()].sort((x, y) => y - x);
    c.last = rest.length ? c.msgs.get(rest[0]) : null;
  }
  renderConvList();
  if (openConv === c.id) renderMessages(c);
}

/**
 * Whether this user may recall `m`: its own within the window; in a group,
 * the owner and admins also their own and lower ranks' at any age (5.4).
 */
function recallable(m) {
  if (m.recalled || m.kind === 'system') return false;
  if (m.from === me && Date.now() - m.ts < settings.recall_window_secs * 1000) return true;
  const g = m.group && groups.get(m.group);
  if (!g || g.dissolved) return false;
  const rank = (u) => (u === g.owner ? 2 : (g.admins || []).includes(u) ? 1 : 0);
  return rank(me) > 0 && (m.from === me || rank(me) > rank(m.from));
}

async function recall(m) {
  try {
    await session.request({ type: 'recall', conv: m.conv, seq: m.seq });
    onRecalled({ conv: m.conv, seq: m.seq });
  } catch (e) {
    toast(e.code === 'forbidden' ? 'Too late to recall this message.' : e.message);
  }
}

/** Whether `m` may still be edited: one's own text, within the window. */
function editable(m) {
  return (
    m.from === me &&
    m.kind === 'text' &&
    !m.recalled &&
    Date.now() - m.ts <= settings.edit_window_secs * 1000
  );
}

async function editMsg(m, text) {
  try {
    const r = await session.request({ type: 'edit', conv: m.conv, seq: m.seq, content: text });
    onEdited({ conv: m.conv, seq: m.seq, content: text, edited_at: r.edited_at });
  } catch (e) {
    toast(e.code === 'forbidden' ? 'This message can no longer be edited.' : e.message);
  }
}

/** An `edited` push (or this device's own edit answered). */
function onEdited(f) {
  const c = conv(f.conv);
  for (const m of [c.msgs.get(f.seq), c.last?.seq === f.seq ? c.last : null]) {
    if (!m || m.edited_at >= f.edited_at) continue;
    m.content = f.content;
    m.edited_at = f.edited_at;
  }
  renderConvList();
  if (openConv === c.id) renderMessages(c);
}

/** Applies one user's reaction to the held message, once. */
function applyReaction(m, user, emoji, on) {
  const rs = { ...(m.reactions || {}) };
  const r = rs[emoji] ? { count: rs[emoji].count, users: [...rs[emoji].users] } : { count: 0, users: [] };
  const has = r.users.includes(user);
  if (on === has) return; // already so (this device's own, then its push)
  if (on) {
    r.users.push(user);
    r.count += 1;
  } else {
    r.users = r.users.filter((u) => u !== user);
    r.count = Math.max(0, r.count - 1);
  }
  if (r.count === 0) delete rs[emoji];
  else rs[emoji] = r;
  m.reactions = rs;
}

function onReaction(f) {
  const c = conv(f.conv);
  const m = c.msgs.get(f.seq);
  if (!m) return;
  applyReaction(m, f.user, f.emoji, f.on);
  if (openConv === c.id) renderMessages(c);
}

/** Adds this user's `emoji` to `m`, or takes it back. */
async function toggleReaction(m, emoji) {
  const on = !(m.reactions?.[emoji]?.users || []).includes(me);
  try {
    await session.request({ type: 'react', conv: m.conv, seq: m.seq, emoji, on });
    applyReaction(m, me, emoji, on);
  } catch (e) {
    if (e.code === 'not_found') applyReaction(m, me, emoji, false);
    else toast(e.message);
  }
  if (openConv === m.conv) renderMessages(conv(m.conv));
}

/** My rank in a group: 'owner', 'admin' or 'member'. */
function rankIn(g) {
  if (!g) return 'member';
  if (g.owner === me) return 'owner';
  return (g.admins || []).includes(me) ? 'admin' : 'member';
}

/** The `mentions` of a group message: the `@id`s of its text that name members. */
function mentionsIn(c, text) {
  const g = groups.get(c.group);
  if (!g) return [];
  const out = new Set();
  for (const [, u] of text.matchAll(/(?:^|\s)@([A-Za-z0-9_.-]{1,64})/g)) {
    if (u === 'all' && rankIn(g) !== 'member') return ['@all'];
    if (u !== me && g.members.includes(u)) out.add(u);
  }
  return [...out];
}

/** Sets what the message box is for: a reply to `m`, an edit of `m`, or a new message. */
function setCompose(next) {
  compose = next;
  const box = $('compose-ctx');
  box.hidden = !next;
  if (!next) return;
  const m = next.m;
  $('compose-ctx-title').textContent =
    next.mode === 'edit' ? 'Edit message' : `Reply to ${nameOf(m.from)}`;
  $('compose-ctx-text').textContent = snippet(m);
  if (next.mode === 'edit') {
    $('text').value = String(m.content);
    fitComposer();
  }
  $('text').focus();
}

async function refreshBlocks() {
  try {
    const r = await api('GET', '/v1/blocks', token);
    blocked.clear();
    for (const u of r.blocked) blocked.add(u);
  } catch (e) {
    // Kept as it was; the next resume asks again.
  }
}

/**
 * Makes the messages from `seq` up to the held ones contiguous, then shows
 * `seq` (a search hit). Pages of 500 forward from just before the hit.
 */
async function loadAround(c, seq) {
  if (!c.loaded && session?.online) {
    try {
      const r = await session.request({ type: 'history', conv: c.id, limit: 50 });
      for (const m of r.msgs) addMsg(m);
      c.loaded = true;
      if (r.msgs.length === 0 || r.msgs[0].seq <= 1) c.complete = true;
    } catch (e) {
      return;
    }
  }
  let lowest = Infinity;
  for (const s of c.msgs.keys()) lowest = Math.min(lowest, s);
  if (seq < lowest) {
    const from = Math.max(0, seq - 21);
    await fillGap(c, lowest === Infinity ? undefined : lowest, from);
    if (from === 0) c.complete = true;
  }
  if (openConv !== c.id) return;
  renderMessages(c);
  showHit(c);
}

/** Scrolls to the conversation's search hit and marks it for a moment. */
function showHit(c) {
  const li = document.querySelector(`#msg-list li[data-seq="${c.hit}"]`);
  if (!li) return;
  li.scrollIntoView({ block: 'center' });
  li.classList.add('hit');
  renderJump();
  const seq = c.hit;
  setTimeout(() => {
    if (c.hit === seq) c.hit = 0;
    document.querySelector(`#msg-list li[data-seq="${seq}"]`)?.classList.remove('hit');
  }, 3000);
}

// ---- mention completion ---------------------------------------------

let mentionPick = 0;

/** The `@word` just before the caret, if any. */
function mentionQuery() {
  const t = $('text');
  const before = t.value.slice(0, t.selectionStart);
  const m = before.match(/(?:^|\s)@([A-Za-z0-9_.-]*)$/);
  return m ? m[1] : null;
}

function mentionChoices() {
  const c = openConv && convs.get(openConv);
  const q = mentionQuery();
  if (!c?.group || q === null) return [];
  const g = groups.get(c.group);
  if (!g) return [];
  const low = q.toLowerCase();
  const all = g.members.filter((u) => u !== me);
  if (rankIn(g) !== 'member') all.unshift('all');
  return all
    .filter((u) => {
      const name = u === 'all' ? 'everyone' : nameOf(u);
      return u.toLowerCase().startsWith(low) || name.toLowerCase().startsWith(low);
    })
    .slice(0, 8);
}

function renderMentions() {
  const list = mentionChoices();
  const ul = $('mention-list');
  ul.hidden = list.length === 0;
  mentionPick = Math.min(mentionPick, Math.max(0, list.length - 1));
  ul.replaceChildren(
    ...list.map((u, i) => {
      const li = el('li', i === mentionPick ? 'active' : '');
      li.dataset.user = u;
      li.setAttribute('role', 'option');
      li.append(el('b', '', u === 'all' ? 'Everyone' : nameOf(u)), el('small', '', ` @${u}`));
      li.addEventListener('mousedown', (ev) => {
        ev.preventDefault();
        pickMention(u);
      });
      return li;
    }),
  );
}

function pickMention(u) {
  const t = $('text');
  const q = mentionQuery();
  if (q === null) return;
  const at = t.selectionStart - q.length;
  t.value = `${t.value.slice(0, at)}${u} ${t.value.slice(t.selectionStart)}`;
  t.selectionStart = t.selectionEnd = at + u.length + 1;
  mentionPick = 0;
  renderMentions();
  t.focus();
}

// ---- history --------------------------------------------------------

async function loadOlder(c) {
  if (c.loading || c.complete || !session?.online) return;
  c.loading = true;
  $('history-state').textContent = 'Loading…';
  let lowest = Infinity;
  for (const s of c.msgs.keys()) lowest = Math.min(lowest, s);
  const frame = { type: 'history', conv: c.id, limit: 50 };
  if (c.loaded && lowest !== Infinity) frame.before_seq = lowest;
  try {
    const r = await session.request(frame);
    for (const m of r.msgs) addMsg(m);
    c.loaded = true;
    const min = r.msgs.length ? r.msgs[0].seq : 0;
    if (r.msgs.length === 0 || min <= 1) c.complete = true;
    if (!c.complete && lowest !== Infinity && min >= lowest) c.complete = true;
    c.failed = false;
  } catch (e) {
    // Offline, or refused: not again on its own until the next resume
    // (a scroll still tries).
    c.failed = true;
  } finally {
    c.loading = false;
  }
  if (openConv === c.id) renderMessages(c, { keepFromBottom: true });
}

// ---- friends and groups --------------------------------------------

async function refreshFriends() {
  if (!token) return;
  try {
    friends = await api('GET', '/v1/friends', token);
  } catch (e) {
    if (e.status === 401) logoutLocal('Your session ended: log in again.');
    return;
  }
  for (const f of friends.friends) presence.set(f.user, f.online);
  renderFriends();
  renderPresence();
}

async function addFriend(user) {
  try {
    const r = await api('PUT', `/v1/friends/${encodeURIComponent(user)}`, token);
    $('friend-note').textContent =
      r.status === 'friends' ? `You and ${user} are friends.` : `Asked ${user}.`;
  } catch (e) {
    $('friend-note').textContent =
      e.code === 'no_such_user' ? `There is no user ${user}.` : e.message;
  }
  refreshFriends();
}

/** A friend request, acceptance or removal, pushed to both sides. */
function onFriend(f) {
  refreshFriends();
  if (f.status === 'incoming') {
    notify(`${nameOf(f.user)} wants to be your friend`, '', `friend:${f.user}`, () => showTab('friends'));
  } else if (f.status === 'friends') {
    $('friend-note').textContent = `You and ${nameOf(f.user)} are friends.`;
  }
}

// ---- names and notifications ----------------------------------------

/** A user's display name: the id until the profile is fetched (once). */
function nameOf(u) {
  if (!u) return '';
  const n = names.get(u);
  if (n !== undefined) return n;
  if (token && !nameFetches.has(u)) {
    nameFetches.add(u);
    api('GET', `/v1/users/${encodeURIComponent(u)}`, token)
      .then((v) => {
        names.set(u, v.name || u);
        avatars.set(u, v.avatar || '');
        scheduleNames();
      })
      .catch(() => names.set(u, u));
  }
  return u;
}

let namesTimer = null;
/** Names arrive one by one: the page is drawn again once for a burst. */
function scheduleNames() {
  if (namesTimer) return;
  namesTimer = setTimeout(() => {
    namesTimer = null;
    renderConvList();
    renderFriends();
    if (me) {
      $('me-name').textContent = nameOf(me);
      renderMe();
    }
    const c = openConv && convs.get(openConv);
    if (c) {
      renderHeader(c);
      renderMessages(c);
    }
  }, 50);
}

/** Shows a system notification while the page is not being looked at. */
function notify(title, body, tag, onclick) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible' && document.hasFocus()) return;
  try {
    const n = new Notification(title, { body, tag, icon: '/web/icon.svg' });
    n.onclick = () => {
      window.focus();
      onclick?.();
      n.close();
    };
  } catch (e) {
    // Some browsers allow notifications only from a service worker.
  }
}

function notifyMsg(c, m) {
  if (c.muted_until > Date.now() && !mentionsMe(m)) return;
  const from = nameOf(m.from);
  const title = c.group ? `${from} in ${convName(c)}` : from;
  notify(title, snippet(m).slice(0, 200), c.id, () => open(c.id));
}

function renderNotifyButton() {
  const can = 'Notification' in window && Notification.permission === 'default';
  $('notify-btn').hidden = !can;
}

function parseUsers(s) {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

const groupFetches = new Map(); // group id -> Promise

/** A group's name and members, fetched once (again when `refresh`). */
function groupInfo(gid, refresh) {
  if (groups.has(gid) && !refresh) return Promise.resolve(groups.get(gid));
  if (groupFetches.has(gid)) return groupFetches.get(gid);
  const p = api('GET', `/v1/groups/${encodeURIComponent(gid)}`, token)
    .then((g) => {
      groups.set(gid, g);
      renderConvList();
      const c = openConv && convs.get(openConv);
      if (c && c.group === gid) renderHeader(c);
      panels.refresh();
      return g;
    })
    .catch(() => null)
    .finally(() => groupFetches.delete(gid));
  groupFetches.set(gid, p);
  return p;
}

function convName(c) {
  if (c.peer) return c.peer === me ? `${nameOf(me)} (you)` : nameOf(c.peer);
  const g = groups.get(c.group);
  if (g) return g.name;
  groupInfo(c.group);
  return c.group;
}

// ---- rendering ------------------------------------------------------


function renderConvList() {
  const ul = $('conv-list');
  const list = [...convs.values()]
    .filter((c) => c.last || c.msgs.size || c.id === openConv)
    .sort(
      (a, b) =>
        Number(b.pinned) - Number(a.pinned) || b.updated_at - a.updated_at || (a.id < b.id ? -1 : 1),
    );
  ul.replaceChildren(
    ...list.map((c) => {
      const li = el('li', 'item conv-item');
      li.dataset.conv = c.id;
      li.tabIndex = 0;
      if (c.id === openConv) li.classList.add('active');
      const pic = c.peer ? userPic(c.peer) : avatar(c.id, convName(c), null, 'group');
      const body = el('div', 'grow');
      const top = el('div', 'line');
      top.append(el('b', 'name', convName(c)));
      if (c.muted_until > Date.now()) {
        li.classList.add('muted');
        const f = el('span', 'flag muted-flag');
        f.title = 'muted';
        top.append(f);
      }
      if (c.pinned) {
        li.classList.add('pinned');
        const f = el('span', 'flag pin-flag');
        f.title = 'pinned';
        top.append(f);
      }
      if (c.last) {
        const t = el('small', 'time', listTime(c.last.ts));
        t.title = new Date(c.last.ts).toLocaleString();
        top.append(t);
      }
      const bottom = el('div', 'line');
      const typ = typingTimers.get(c.id);
      bottom.append(
        el(
          'span',
          typ ? 'preview typing-note' : 'preview',
          typ ? `${nameOf(typ.user)} is typing…` : preview(c.last),
        ),
      );
      if (c.mentioned && c.unread > 0) bottom.append(el('span', 'badge mention', '@'));
      if (c.unread > 0) {
        const muted = c.muted_until > Date.now() ? ' quiet' : '';
        bottom.append(el('span', `badge unread${muted}`, String(c.unread)));
      }
      body.append(top, bottom);
      li.append(pic, body);
      li.addEventListener('click', () => open(c.id));
      li.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') open(c.id);
      });
      return li;
    }),
  );
  $('no-convs').hidden = list.length > 0 || !$('search-results').hidden;
  const total = Math.max(0, serverTotal);
  $('total-unread').hidden = total === 0;
  $('total-unread').textContent = String(total);
  document.title = total ? `(${total}) Tern` : 'Tern';
}

function renderFriends() {
  const fl = $('friend-list');
  fl.replaceChildren(
    ...friends.friends.map((f) => {
      const li = el('li', 'item friend');
      li.dataset.user = f.user;
      li.tabIndex = 0;
      li.append(userPic(f.user, 'small'), el('b', 'grow name', nameOf(f.user)));
      const chat = el('button', 'secondary', 'Chat');
      chat.type = 'button';
      chat.addEventListener('click', () => open(dmConv(me, f.user)));
      li.append(chat);
      li.addEventListener('dblclick', () => open(dmConv(me, f.user)));
      return li;
    }),
  );
  if (friends.friends.length === 0) fl.append(el('li', 'empty', 'No friends yet.'));
  $('incoming-title').hidden = friends.incoming.length === 0;
  $('incoming-list').replaceChildren(
    ...friends.incoming.map((u) => {
      const li = el('li', 'item incoming');
      li.dataset.user = u;
      li.append(el('b', 'grow name', nameOf(u)));
      const ok = el('button', '', 'Accept');
      ok.type = 'button';
      ok.addEventListener('click', () => addFriend(u));
      const no = el('button', 'secondary', 'Decline');
      no.type = 'button';
      no.addEventListener('click', async () => {
        await api('DELETE', `/v1/friends/${encodeURIComponent(u)}`, token).catch(() => {});
        refreshFriends();
      });
      li.append(ok, no);
      return li;
    }),
  );
  $('outgoing-title').hidden = friends.outgoing.length === 0;
  $('outgoing-list').replaceChildren(
    ...friends.outgoing.map((u) => {
      const li = el('li', 'item outgoing');
      li.append(el('span', 'grow name', nameOf(u)));
      return li;
    }),
  );
  const n = friends.incoming.length;
  $('requests-badge').hidden = n === 0;
  $('requests-badge').textContent = String(n);
}

function renderPresence() {
  for (const d of document.querySelectorAll('.dot[data-user]')) {
    d.classList.toggle('online', presence.get(d.dataset.user) === true);
  }
  const c = openConv && convs.get(openConv);
  if (c) renderHeader(c);
}

function renderTyping() {
  const t = openConv && typingTimers.get(openConv);
  $('typing').textContent = t ? `${nameOf(t.user)} is typing…` : '';
}

/** A user's picture with the presence dot on its corner. */
function userPic(u, cls) {
  const pic = avatar(u, nameOf(u), avatars.get(u), cls);
  const dot = el('span', 'dot');
  dot.dataset.user = u;
  dot.classList.toggle('online', presence.get(u) === true);
  pic.append(dot);
  return pic;
}

function renderMe() {
  if (!me) return;
  $('me-avatar').replaceChildren(avatar(me, nameOf(me), avatars.get(me), 'small'));
}

function renderHeader(c) {
  $('conv-title').textContent = convName(c);
  $('conv-avatar').replaceChildren(
    c.peer ? avatar(c.peer, nameOf(c.peer), avatars.get(c.peer), 'small') : avatar(c.id, convName(c), null, 'group small'),
    $('conv-dot'),
  );
  const dot = $('conv-dot');
  if (c.peer) {
    const on = presence.get(c.peer) === true;
    dot.hidden = false;
    dot.dataset.user = c.peer;
    dot.classList.toggle('online', on);
    $('conv-sub').textContent = c.peer === me ? 'notes to yourself' : on ? 'online' : 'offline';
  } else {
    dot.hidden = true;
    const g = groups.get(c.group);
    $('conv-sub').textContent = g
      ? g.dissolved
        ? 'dissolved'
        : `${g.members.length} members`
      : 'group';
  }
  const g = c.group && groups.get(c.group);
  // A dissolved group stays readable; every send would be refused.
  const closed = !!g?.dissolved;
  $('text').disabled = closed;
  $('send-btn').disabled = closed;
  $('attach-btn').disabled = closed;
  $('mic-btn').disabled = closed;
  $('text').placeholder = closed ? 'This group was dissolved' : 'Message';
  $('add-members-btn').hidden = !c.group || closed;
  $('announcement').hidden = !g?.announcement;
  $('announcement').replaceChildren();
  if (g?.announcement) $('announcement').append(el('b', '', 'Announcement: '), g.announcement);
}

function renderConv() {
  const c = openConv && convs.get(openConv);
  document.body.classList.toggle('conv-open', !!c);
  $('no-conv').hidden = !!c;
  $('conv-bar').hidden = !c;
  $('msgs').hidden = !c;
  $('msgs').parentElement.hidden = !c;
  $('composer').hidden = !c;
  $('add-members-form').hidden = true;
  $('announcement').hidden = true;
  $('mention-list').hidden = true;
  if (compose && compose.m.conv !== openConv) setCompose(null);
  if (!c) return;
  renderHeader(c);
  renderTyping();
  renderMessages(c, { toBottom: !c.hit });
}

/** Whether the message list is scrolled to (near) its end. */
function atBottom() {
  const box = $('msgs');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

function renderJump() {
  const show = !!openConv && !atBottom();
  $('jump-btn').hidden = !show;
  if (!show) unseenBelow = 0;
  $('jump-count').hidden = unseenBelow === 0;
  $('jump-count').textContent = String(unseenBelow);
}

function renderMessages(c, opts = {}) {
  const box = $('msgs');
  const fromBottom = box.scrollHeight - box.scrollTop;
  const wasAtBottom = atBottom();
  const seqs = [...c.msgs.keys()].sort((a, b) => a - b);
  const items = seqs.map((s) => msgItem(c, c.msgs.get(s), false));
  for (const o of outbox) {
    if (o.conv !== c.id) continue;
    const sent = seqs.some((s) => c.msgs.get(s).client_msg_id === o.cid && c.msgs.get(s).from === me);
    if (!sent) {
      items.push(
        msgItem(
          c,
          { from: me, kind: o.kind, content: contentOf(o), ts: o.ts, client_msg_id: o.cid, reply_to: o.reply_to },
          true,
        ),
      );
    }
  }
  for (const u of uploads) if (u.conv === c.id) items.push(uploadItem(u));
  const ts = new Map(items.map((li, i) => [li, i < seqs.length ? c.msgs.get(seqs[i]).ts : Date.now()]));
  $('msg-list').replaceChildren(...withDays(items, (li) => ts.get(li)));
  $('history-state').textContent = c.complete ? 'Start of the conversation' : c.loading ? 'Loading…' : '';
  if (opts.keepFromBottom) box.scrollTop = box.scrollHeight - fromBottom;
  else if (opts.toBottom || wasAtBottom) box.scrollTop = box.scrollHeight;
  renderJump();
  if (c.loading || c.failed) return;
  if (!c.loaded) loadOlder(c);
  else if (!c.complete && box.scrollHeight <= box.clientHeight + 10) loadOlder(c);
}

function open(id, hitSeq) {
  hideMenu();
  if (recording && recording.conv !== id) finishRecording(false);
  const c = conv(id);
  c.hit = hitSeq || 0;
  openConv = id;
  showTab('chats');
  renderConvList();
  renderConv();
  markRead(c);
  if (c.peer && c.peer !== me && !presence.has(c.peer) && session?.online) {
    session
      .request({ type: 'presence', users: [c.peer] })
      .then((r) => {
        for (const [u, on] of Object.entries(r.online)) presence.set(u, on);
        renderPresence();
      })
      .catch(() => {});
  }
  if (c.hit) loadAround(c, c.hit);
  panels.follow();
  if (window.matchMedia('(min-width: 721px)').matches) $('text').focus();
}

function showTab(t) {
  $('tab-chats').classList.toggle('active', t === 'chats');
  $('tab-friends').classList.toggle('active', t === 'friends');
  $('chats-pane').hidden = t !== 'chats';
  $('friends-pane').hidden = t !== 'friends';
}

function showMenu(x, y, m) {
  menuTarget = m;
  const menu = $('menu');
  $('recall-btn').hidden = !recallable(m);
  $('edit-btn').hidden = !editable(m);
  $('reply-btn').hidden = m.recalled;
  $('react-row').hidden = m.recalled;
  $('react-row').replaceChildren(
    ...QUICK_EMOJIS.map((e) => {
      const b = el('button', 'emoji', e);
      b.type = 'button';
      b.title = `React with ${e}`;
      if ((m.reactions?.[e]?.users || []).includes(me)) b.classList.add('own');
      b.addEventListener('click', () => {
        hideMenu();
        toggleReaction(m, e);
      });
      return b;
    }),
  );
  menu.hidden = false;
  menu.style.left = `${Math.min(x, window.innerWidth - menu.offsetWidth - 8)}px`;
  menu.style.top = `${Math.min(y, window.innerHeight - menu.offsetHeight - 8)}px`;
  (recallable(m) ? $('recall-btn') : $('delete-btn')).focus();
}

function hideMenu() {
  $('menu').hidden = true;
  menuTarget = null;
}

let toastTimer = null;
function toast(msg) {
  const t = $('toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, 4000);
}

// ---- page events ----------------------------------------------------

/** The message box grows with its text, up to a third of the window. */
function fitComposer() {
  const t = $('text');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, window.innerHeight / 3)}px`;
  // An empty box offers the microphone where Send would be.
  $('composer').classList.toggle('empty', t.value === '');
}

function wireApp() {
  $('tab-chats').addEventListener('click', () => showTab('chats'));
  $('tab-friends').addEventListener('click', () => {
    showTab('friends');
    refreshFriends();
  });
  $('logout-btn').addEventListener('click', async () => {
    await unsubscribePush(token);
    await api('DELETE', '/v1/sessions', token).catch(() => {});
    logoutLocal('');
  });
  $('me-avatar').addEventListener('click', () => panels.settings());
  wireAttachments();
  $('back-btn').addEventListener('click', () => {
    openConv = null;
    renderConv();
    renderConvList();
  });
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value.trim();
    $('text').value = '';
    fitComposer();
    send(text);
  });
  // Enter sends, Shift+Enter starts a new line (not while an input method
  // is composing a character).
  $('text').addEventListener('keydown', (ev) => {
    if (!$('mention-list').hidden && !ev.isComposing) {
      const n = $('mention-list').children.length;
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        mentionPick = (mentionPick + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
        renderMentions();
        return;
      }
      if (ev.key === 'Enter' || ev.key === 'Tab') {
        ev.preventDefault();
        pickMention($('mention-list').children[mentionPick].dataset.user);
        return;
      }
      if (ev.key === 'Escape') {
        $('mention-list').hidden = true;
        return;
      }
    }
    if (ev.key === 'Escape' && compose) {
      setCompose(null);
      $('text').value = '';
      fitComposer();
      return;
    }
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('text').addEventListener('input', fitComposer);
  $('text').addEventListener('input', renderMentions);
  $('text').addEventListener('blur', () => {
    $('mention-list').hidden = true;
  });
  $('compose-ctx-cancel').addEventListener('click', () => {
    if (compose?.mode === 'edit') $('text').value = '';
    setCompose(null);
    fitComposer();
  });
  $('reply-btn').addEventListener('click', () => {
    const m = menuTarget;
    hideMenu();
    if (m) setCompose({ mode: 'reply', m });
  });
  $('edit-btn').addEventListener('click', () => {
    const m = menuTarget;
    hideMenu();
    if (m) setCompose({ mode: 'edit', m });
  });
  $('info-btn').addEventListener('click', () => {
    const c = openConv && convs.get(openConv);
    if (c) panels.info(c);
  });
  $('settings-btn').addEventListener('click', () => panels.settings());
  $('text').addEventListener('input', () => {
    const now = Date.now();
    if (openConv && $('text').value && now - lastTypingSent > 3000) {
      lastTypingSent = now;
      session?.post({ type: 'typing', conv: openConv });
    }
  });
  $('msgs').addEventListener('scroll', () => {
    const c = openConv && convs.get(openConv);
    if (c && $('msgs').scrollTop < 60) loadOlder(c);
    renderJump();
  });
  $('jump-btn').addEventListener('click', () => {
    unseenBelow = 0;
    $('msgs').scrollTop = $('msgs').scrollHeight;
    renderJump();
  });
  $('notify-btn').addEventListener('click', async () => {
    await Notification.requestPermission().catch(() => {});
    renderNotifyButton();
    subscribePush(token);
  });
  $('add-friend-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const u = $('add-friend-user').value.trim();
    $('add-friend-user').value = '';
    if (u) addFriend(u);
  });
  $('new-group-btn').addEventListener('click', () => {
    $('new-group-form').hidden = false;
    $('group-name').focus();
  });
  $('new-group-cancel').addEventListener('click', () => {
    $('new-group-form').hidden = true;
  });
  $('new-group-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const g = await api('POST', '/v1/groups', token, {
        name: $('group-name').value.trim(),
        members: parseUsers($('group-members').value),
      });
      groups.set(g.group, g);
      $('new-group-form').hidden = true;
      $('group-name').value = '';
      $('group-members').value = '';
      open(`group:${g.group}`);
    } catch (e) {
      toast(e.code === 'no_such_user' ? `Unknown user: ${e.message}` : e.message);
    }
  });
  $('add-members-btn').addEventListener('click', () => {
    $('add-members-form').hidden = !$('add-members-form').hidden;
    if (!$('add-members-form').hidden) $('add-members-users').focus();
  });
  $('add-members-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const c = convs.get(openConv);
    if (!c?.group) return;
    try {
      const g = await api('POST', `/v1/groups/${encodeURIComponent(c.group)}/members`, token, {
        users: parseUsers($('add-members-users').value),
      });
      groups.set(g.group, g);
      $('add-members-users').value = '';
      $('add-members-form').hidden = true;
      renderHeader(c);
      // The membership messages come as pushes; fetch them too in case
      // this device was between connections.
      await fillGap(c);
    } catch (e) {
      toast(e.message);
    }
  });
  $('recall-btn').addEventListener('click', () => {
    const m = menuTarget;
    hideMenu();
    if (m) recall(m);
  });
  $('delete-btn').addEventListener('click', () => {
    const m = menuTarget;
    hideMenu();
    if (m) deleteForMe(m);
  });
  document.addEventListener('click', (ev) => {
    if (!$('menu').contains(ev.target)) hideMenu();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') hideMenu();
  });
  document.addEventListener('visibilitychange', () => {
    if (openConv) markRead(convs.get(openConv));
  });
  window.addEventListener('online', () => session?.kick());
}

/** The paperclip, drag and drop, paste, and the microphone. */
function wireAttachments() {
  $('attach-btn').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', () => {
    const files = [...$('file-input').files];
    $('file-input').value = '';
    attachFiles(files);
  });
  $('text').addEventListener('paste', (ev) => {
    const files = [...(ev.clipboardData?.files || [])];
    if (files.length === 0) return;
    ev.preventDefault();
    attachFiles(files);
  });
  const hasFiles = (ev) => [...(ev.dataTransfer?.types || [])].includes('Files');
  let depth = 0;
  const zone = $('drop-zone');
  $('conv').addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth += 1;
    zone.hidden = !canAttach();
  });
  $('conv').addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = canAttach() ? 'copy' : 'none';
  });
  $('conv').addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.hidden = true;
  });
  $('conv').addEventListener('drop', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    zone.hidden = true;
    attachFiles([...ev.dataTransfer.files]);
  });
  // A file dropped elsewhere is not opened in place of the client.
  for (const t of ['dragover', 'drop']) {
    window.addEventListener(t, (ev) => {
      if (hasFiles(ev)) ev.preventDefault();
    });
  }

  const mic = $('mic-btn');
  mic.hidden = !canRecord();
  $('composer').classList.toggle('can-record', canRecord());
  mic.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0 || recording) return;
    ev.preventDefault();
    startRecording(true);
    const at = performance.now();
    window.addEventListener(
      'pointerup',
      () => {
        if (!recording) return;
        if (performance.now() - at >= HOLD_MS) finishRecording(true);
        else {
          // A click: recording goes on until Send or Cancel.
          recording.hold = false;
          $('rec-hint').textContent = 'Recording… Send when done';
        }
      },
      { once: true },
    );
  });
  // The keyboard (Enter or Space on the button) starts a recording too.
  mic.addEventListener('click', (ev) => {
    if (ev.detail === 0 && !recording) startRecording(false);
  });
  $('rec-send').addEventListener('click', () => finishRecording(true));
  $('rec-cancel').addEventListener('click', () => finishRecording(false));
}

initPanels({
  get me() {
    return me;
  },
  get token() {
    return token;
  },
  get session() {
    return session;
  },
  get openConv() {
    return openConv && convs.get(openConv);
  },
  convs,
  groups,
  blocked,
  conv,
  open,
  nameOf,
  convName,
  rankIn,
  groupInfo,
  toast,
  snippet,
  refreshBlocks,
  logoutLocal,
  MUTED_FOREVER,
  closeConv: () => {
    openConv = null;
    renderConv();
    renderConvList();
  },
  redraw: () => {
    renderConvList();
    const c = openConv && convs.get(openConv);
    if (c) renderHeader(c);
  },
  setName: (u, n) => {
    names.set(u, n);
    scheduleNames();
  },
  setAvatar: (u, id) => {
    avatars.set(u, id || '');
    scheduleNames();
  },
  avatarOf: (u, cls) => avatar(u, nameOf(u), avatars.get(u), cls),
  dropPush: () => unsubscribePush(token),
});

initMedia({
  get token() {
    return token;
  },
  get maxBytes() {
    return settings.media_max_bytes;
  },
  toast,
});

initBubbles({
  get me() {
    return me;
  },
  nameOf,
  showMenu,
  loadAround,
  toggleReaction,
});

// Exposed for the end-to-end test and the curious: read-only views.
window.tern = {
  get user() {
    return me;
  },
  get connected() {
    return !!session?.online;
  },
  get outbox() {
    return outbox.length;
  },
  ApiError,
};

init();
