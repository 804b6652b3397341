// How messages look: a bubble with its quote, mentions, edit mark,
// receipt mark and reactions; system events as text; list previews; day
// dividers. The state stays in app.js, reached through `ctx`.

import { clock, dayLabel, dayStart, el } from './format.js';
import { attachment, formatDuration } from './media.js';

let ctx = null;

/**
 * `context`: `me` (a getter), `nameOf(user)`, `showMenu(x, y, m)`,
 * `loadAround(c, seq)` and `toggleReaction(m, emoji)`.
 */
export function initBubbles(context) {
  ctx = context;
}

/** Whether a message mentions this user (by name or `@all`). */
export function mentionsMe(m) {
  return Array.isArray(m.mentions) && (m.mentions.includes(ctx.me) || m.mentions.includes('@all'));
}

/** A media message in words: "Photo", "Voice message (0:07)", "File: name". */
function mediaText(m) {
  const c = m.content && typeof m.content === 'object' ? m.content : {};
  switch (m.kind) {
    case 'image':
      return 'Photo';
    case 'voice':
      return Number(c.duration) > 0 ? `Voice message (${formatDuration(c.duration)})` : 'Voice message';
    case 'file':
      return typeof c.name === 'string' && c.name ? `File: ${c.name}` : 'File';
    default:
      return `[${m.kind}]`;
  }
}

export function snippet(m) {
  if (!m) return '';
  if (m.recalled) return 'Message recalled';
  if (m.kind === 'text') return String(m.content).slice(0, 140);
  return mediaText(m);
}

export function preview(m) {
  if (!m) return '';
  if (m.recalled) return 'Message recalled';
  if (m.kind === 'system') return systemText(m);
  const who = m.from === ctx.me ? 'You: ' : m.group ? `${ctx.nameOf(m.from)}: ` : '';
  if (m.kind === 'text') return `${who}${m.content}`;
  return `${who}${mediaText(m)}`;
}

const MEDIA_KINDS = ['image', 'voice', 'file'];

export function systemText(m) {
  const ev = m.content || {};
  switch (ev.event) {
    case 'group_created':
      return `${ctx.nameOf(m.from)} created the group`;
    case 'member_joined':
      return m.from === ev.user
        ? `${ctx.nameOf(ev.user)} joined`
        : `${ctx.nameOf(m.from)} added ${ctx.nameOf(ev.user)}`;
    case 'member_left':
      return `${ctx.nameOf(ev.user)} left`;
    case 'member_removed':
      return `${ctx.nameOf(m.from)} removed ${ctx.nameOf(ev.user)}`;
    case 'admin_added':
      return `${ctx.nameOf(m.from)} made ${ctx.nameOf(ev.user)} an admin`;
    case 'admin_removed':
      return `${ctx.nameOf(m.from)} removed ${ctx.nameOf(ev.user)} as admin`;
    case 'member_muted':
      return `${ctx.nameOf(m.from)} muted ${ctx.nameOf(ev.user)} until ${new Date(ev.until).toLocaleString()}`;
    case 'member_unmuted':
      return `${ctx.nameOf(m.from)} unmuted ${ctx.nameOf(ev.user)}`;
    case 'group_renamed':
      return `${ctx.nameOf(m.from)} renamed the group to “${ev.name}”`;
    case 'announcement_changed':
      return ev.announcement
        ? `${ctx.nameOf(m.from)} changed the announcement`
        : `${ctx.nameOf(m.from)} cleared the announcement`;
    case 'muted_all_changed':
      return ev.muted_all
        ? `${ctx.nameOf(m.from)}: only admins may send now`
        : `${ctx.nameOf(m.from)}: everyone may send again`;
    case 'group_dissolved':
      return `${ctx.nameOf(m.from)} dissolved the group`;
    default:
      return `${ctx.nameOf(m.from)}: ${ev.event || 'event'}`;
  }
}


/** The mark of one of my messages: pending, sent, delivered or read. */
export function markOf(c, m) {
  if (!c.peer || c.peer === ctx.me) return 'sent';
  if (m.seq <= c.peerRead) return 'read';
  if (m.seq <= c.delivered) return 'delivered';
  return 'sent';
}

const MARK_TEXT = { pending: '🕓', sent: '✓', delivered: '✓✓', read: '✓✓' };
const MARK_TITLE = { pending: 'not sent yet', sent: 'sent', delivered: 'delivered', read: 'read' };

export function msgItem(c, m, pending) {
  const mine = m.from === ctx.me;
  const li = el('li', `msg ${mine ? 'mine' : 'theirs'}`);
  if (m.kind === 'system') {
    li.className = 'msg system';
    li.append(el('span', 'text', systemText(m)));
    li.dataset.seq = String(m.seq);
    return li;
  }
  const bubble = el('div', 'bubble');
  if (c.group && !mine) bubble.append(el('small', 'from', ctx.nameOf(m.from)));
  if (m.reply_to) bubble.append(quoteOf(c, m.reply_to));
  if (m.recalled) {
    li.classList.add('recalled');
    bubble.append(el('span', 'text', 'Message recalled'));
  } else if (m.kind === 'text') {
    bubble.append(textWithMentions(m));
    if (mentionsMe(m) && !mine) li.classList.add('mentions-me');
  } else if (MEDIA_KINDS.includes(m.kind)) {
    li.classList.add(`kind-${m.kind}`);
    bubble.classList.add('media');
    bubble.append(attachment(m, pending ? `cid:${m.client_msg_id}` : m.msg_id));
  } else {
    bubble.append(el('span', 'text', `[${m.kind}]`));
  }
  const meta = el('small', 'meta');
  if (m.edited_at && !m.recalled) {
    const ed = el('span', 'edited', 'edited ');
    ed.title = `edited ${new Date(m.edited_at).toLocaleString()}`;
    meta.append(ed);
  }
  meta.append(clock(m.ts));
  meta.title = new Date(m.ts).toLocaleString();
  if (mine && !m.recalled) {
    const mark = pending ? 'pending' : markOf(c, m);
    const s = el('span', `mark ${mark}`, MARK_TEXT[mark]);
    s.title = MARK_TITLE[mark];
    li.dataset.mark = mark;
    meta.append(' ', s);
  }
  bubble.append(meta);
  li.append(bubble);
  if (!pending && !m.recalled && m.reactions && Object.keys(m.reactions).length) {
    li.append(reactionsOf(m));
  }
  if (pending) {
    li.dataset.cid = m.client_msg_id;
  } else {
    li.dataset.seq = String(m.seq);
    li.dataset.msgId = m.msg_id;
    {
      li.addEventListener('contextmenu', (ev) => {
        ev.preventDefault();
        ctx.showMenu(ev.clientX, ev.clientY, m);
      });
      // Touch screens without a context menu: a tap opens it.
      if (window.matchMedia('(pointer: coarse)').matches) {
        li.addEventListener('click', (ev) => {
          ev.stopPropagation();
          ctx.showMenu(ev.clientX, ev.clientY, m);
        });
      }
    }
  }
  return li;
}

/** The quoted message above a reply's text; a click shows it. */
function quoteOf(c, seq) {
  const q = c.msgs.get(seq);
  const box = el('div', 'quote');
  box.dataset.seq = String(seq);
  box.append(el('b', '', q ? ctx.nameOf(q.from) : 'Reply'), el('span', 'q-text', q ? snippet(q) : 'an earlier message'));
  box.addEventListener('click', (ev) => {
    ev.stopPropagation();
    c.hit = seq;
    ctx.loadAround(c, seq);
  });
  return box;
}

/** A text whose `@id`s naming mentioned members stand out. */
function textWithMentions(m) {
  const span = el('span', 'text');
  const text = String(m.content);
  const named = new Set(Array.isArray(m.mentions) ? m.mentions : []);
  if (named.size === 0) {
    span.textContent = text;
    return span;
  }
  let at = 0;
  for (const x of text.matchAll(/@([A-Za-z0-9_.-]{1,64})/g)) {
    const u = x[1];
    if (!(named.has(u) || (u === 'all' && named.has('@all')))) continue;
    span.append(text.slice(at, x.index));
    const b = el('span', 'mention', x[0]);
    b.title = u === 'all' ? 'everyone' : ctx.nameOf(u);
    span.append(b);
    at = x.index + x[0].length;
  }
  span.append(text.slice(at));
  return span;
}

/** The reaction chips under a bubble: a click adds or takes back one's own. */
function reactionsOf(m) {
  const row = el('div', 'reactions');
  for (const [emoji, r] of Object.entries(m.reactions)) {
    const b = el('button', 'chip', `${emoji} ${r.count}`);
    b.type = 'button';
    b.dataset.emoji = emoji;
    if (r.users.includes(ctx.me)) b.classList.add('own');
    b.title = r.users.map(ctx.nameOf).join(', ');
    b.addEventListener('click', (ev) => {
      ev.stopPropagation();
      ctx.toggleReaction(m, emoji);
    });
    row.append(b);
  }
  return row;
}

/** A day divider before the first message of each day. */
export function withDays(items, tsOf) {
  const out = [];
  let day = null;
  for (const li of items) {
    const ts = tsOf(li);
    if (ts !== undefined && dayStart(ts) !== day) {
      day = dayStart(ts);
      const d = el('li', 'day');
      d.append(el('span', '', dayLabel(ts)));
      out.push(d);
    }
    out.push(li);
  }
  return out;
}

