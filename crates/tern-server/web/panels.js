// The web client's side panels and search: message search (5.2), a
// conversation's info (mute, pin, block; a group's members, roles and
// settings, 5.3 and 5.4) and this user's settings (name, sessions, blocked
// users). The page's state stays in app.js, reached through `ctx`.

import { api } from './conn.js';
import { clock, dayLabel, el, listTime } from './format.js';
import { checkFile, isImageType, upload, uploadError } from './media.js';

const $ = (id) => document.getElementById(id);
let ctx = null;
let shown = null; // {kind: 'info', conv} | {kind: 'settings'}

function button(text, cls, onclick, title) {
  const b = el('button', cls, text);
  b.type = 'button';
  if (title) b.title = title;
  b.addEventListener('click', onclick);
  return b;
}

/** An HTTP call with this tab's token; a refusal is shown, not thrown. */
async function call(method, path, body) {
  try {
    return { ok: true, v: await api(method, path, ctx.token, body) };
  } catch (e) {
    ctx.toast(e.message);
    return { ok: false, e };
  }
}

const enc = encodeURIComponent;

// ---- the panel --------------------------------------------------------

function show(title, body) {
  $('panel-title').textContent = title;
  $('panel-body').replaceChildren(...body);
  $('panel').hidden = false;
  document.body.classList.add('panel-open');
}

function close() {
  shown = null;
  $('panel').hidden = true;
  document.body.classList.remove('panel-open');
}

function section(title, ...children) {
  const s = el('section', 'panel-section');
  if (title) s.append(el('h2', '', title));
  s.append(...children);
  return s;
}

// ---- conversation info ------------------------------------------------

function settingsRow(c) {
  const muted = c.muted_until > Date.now();
  const put = (body) =>
    call('PUT', `/v1/conversations/${enc(c.id)}/settings`, body).then((r) => {
      if (!r.ok) return;
      c.muted_until = r.v.muted_until;
      c.pinned = r.v.pinned;
      ctx.redraw();
      refresh();
    });
  const row = el('div', 'row wrap');
  row.append(
    button(muted ? 'Unmute' : 'Mute', 'secondary', () => put({ muted_until: muted ? 0 : ctx.MUTED_FOREVER }),
      muted ? 'Notify me of new messages again' : 'No notifications for this conversation'),
    button(c.pinned ? 'Unpin' : 'Pin', 'secondary', () => put({ pinned: !c.pinned }),
      c.pinned ? 'Sort this conversation by its activity again' : 'Keep this conversation at the top'),
  );
  row.children[0].id = 'mute-btn';
  row.children[1].id = 'pin-btn';
  return row;
}

function dmInfo(c) {
  const u = c.peer;
  const body = [
    section('', el('p', 'big', ctx.nameOf(u)), el('p', 'dim', `@${u}`)),
    section('Notifications and order', settingsRow(c)),
  ];
  if (u !== ctx.me) {
    const isBlocked = ctx.blocked.has(u);
    const b = button(isBlocked ? 'Unblock' : 'Block', isBlocked ? 'secondary' : 'danger', async () => {
      const r = await call(isBlocked ? 'DELETE' : 'PUT', `/v1/blocks/${enc(u)}`);
      if (!r.ok) return;
      if (isBlocked) ctx.blocked.delete(u);
      else ctx.blocked.add(u);
      ctx.toast(isBlocked ? `${ctx.nameOf(u)} is unblocked.` : `${ctx.nameOf(u)} is blocked.`);
      refresh();
    });
    b.id = 'block-btn';
    body.push(
      section(
        'Block',
        el(
          'p',
          'dim',
          isBlocked
            ? 'Blocked: their messages and friend requests to you are refused, and neither of you sees the other online.'
            : 'A blocked user cannot message you or ask to be your friend; groups are not affected.',
        ),
        b,
      ),
    );
  }
  show('Info', body);
}

const HOUR_MS = 3600000;

async function groupInfoPanel(c) {
  const g = await ctx.groupInfo(c.group, true);
  if (!shown || shown.conv !== c.id) return;
  if (!g) {
    show('Group', [section('', el('p', 'dim', 'Only members see a group.')), section('Notifications and order', settingsRow(c))]);
    return;
  }
  const rank = ctx.rankIn(g);
  const staff = rank !== 'member' && !g.dissolved;
  const gp = `/v1/groups/${enc(g.group)}`;
  const patch = async (body) => {
    const r = await call('PATCH', gp, body);
    if (r.ok) {
      ctx.groups.set(g.group, { ...g, ...r.v });
      ctx.redraw();
      refresh();
    }
  };
  const after = async (p) => {
    const r = await p;
    if (r.ok) {
      await ctx.groupInfo(g.group, true);
      refresh();
    }
  };

  const head = section('');
  if (staff) {
    const f = el('form', 'row');
    const name = el('input', 'grow');
    name.id = 'group-rename';
    name.value = g.name;
    name.maxLength = 128;
    name.required = true;
    f.append(name, button('Rename', 'secondary', () => f.requestSubmit()));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (name.value.trim() && name.value.trim() !== g.name) patch({ name: name.value.trim() });
    });
    head.append(f);
  } else {
    head.append(el('p', 'big', g.name));
  }
  head.append(el('p', 'dim', g.dissolved ? 'This group was dissolved: it can be read, not written to.' : `${g.members.length} members`));

  const ann = section('Announcement');
  if (staff) {
    const t = el('textarea', 'grow');
    t.id = 'group-announcement';
    t.rows = 3;
    t.value = g.announcement || '';
    t.placeholder = 'Shown above the conversation to every member';
    ann.append(t, button('Save announcement', 'secondary', () => patch({ announcement: t.value.trim() })));
    const all = el('label', 'check');
    const box = el('input');
    box.type = 'checkbox';
    box.id = 'muted-all';
    box.checked = !!g.muted_all;
    box.addEventListener('change', () => patch({ muted_all: box.checked }));
    all.append(box, ' Only the owner and admins may send');
    ann.append(all);
  } else {
    ann.append(el('p', g.announcement ? '' : 'dim', g.announcement || 'No announcement.'));
    if (g.muted_all) ann.append(el('p', 'dim', 'Only the owner and admins may send.'));
  }

  const admins = new Set(g.admins || []);
  const rankOf = (u) => (u === g.owner ? 2 : admins.has(u) ? 1 : 0);
  const mine = rankOf(ctx.me);
  const ul = el('ul', 'list members');
  ul.id = 'member-list';
  for (const u of g.members) {
    const li = el('li', 'item member');
    li.dataset.user = u;
    const who = el('div', 'grow');
    who.append(el('b', 'name', u === ctx.me ? `${ctx.nameOf(u)} (you)` : ctx.nameOf(u)));
    const role = u === g.owner ? 'owner' : admins.has(u) ? 'admin' : '';
    if (role) who.append(el('span', `role ${role}`, role));
    const mutedUntil = (g.mutes || {})[u] || 0;
    if (mutedUntil > Date.now()) {
      const tag = el('span', 'role muted', 'muted');
      tag.title = `Muted until ${new Date(mutedUntil).toLocaleString()}`;
      who.append(tag);
    }
    li.append(who);
    const acts = el('div', 'row wrap acts');
    if (!g.dissolved && u !== ctx.me) {
      if (mine === 2) {
        acts.append(
          admins.has(u)
            ? button('Remove admin', 'secondary small', () => after(call('DELETE', `${gp}/admins/${enc(u)}`)))
            : button('Make admin', 'secondary small', () => after(call('PUT', `${gp}/admins/${enc(u)}`))),
        );
      }
      if (mine > rankOf(u)) {
        acts.append(
          mutedUntil > Date.now()
            ? button('Unmute', 'secondary small', () => after(call('DELETE', `${gp}/mutes/${enc(u)}`)),
              'Let them send again')
            : button('Mute 1 h', 'secondary small', () =>
              after(call('PUT', `${gp}/mutes/${enc(u)}`, { until: Date.now() + HOUR_MS })),
            'Stop them sending for an hour'),
          button('Remove', 'danger small', () => after(call('DELETE', `${gp}/members/${enc(u)}`))),
        );
      }
    }
    li.append(acts);
    ul.append(li);
  }
  const members = section('Members', ul);
  if (!g.dissolved) {
    const f = el('form', 'row');
    const users = el('input', 'grow');
    users.placeholder = 'Add: user ids, comma separated';
    users.autocapitalize = 'none';
    f.append(users, button('Add', 'secondary', () => f.requestSubmit()));
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const list = users.value.split(/[\s,]+/).filter(Boolean);
      if (list.length) after(call('POST', `${gp}/members`, { users: list }));
    });
    members.append(f);
  }

  const end = section('');
  const endRow = el('div', 'row wrap');
  if (!g.dissolved) {
    const leave = button('Leave group', 'danger', async () => {
      if (!confirm(`Leave ${g.name}?`)) return;
      const r = await call('DELETE', `${gp}/members/${enc(ctx.me)}`);
      if (r.ok) close();
    });
    leave.id = 'leave-btn';
    endRow.append(leave);
    if (rank === 'owner') {
      const d = button('Dissolve group', 'danger', async () => {
        if (!confirm(`Dissolve ${g.name} for every member?`)) return;
        await after(call('DELETE', gp));
      });
      d.id = 'dissolve-btn';
      endRow.append(d);
    }
  }
  end.append(endRow);
  show('Group info', [head, section('Notifications and order', settingsRow(c)), ann, members, end]);
}

// ---- this user's settings ---------------------------------------------

async function settingsPanel() {
  const [sessions, blocks, meView] = await Promise.all([
    call('GET', '/v1/sessions'),
    call('GET', '/v1/blocks'),
    call('GET', `/v1/users/${enc(ctx.me)}`),
  ]);
  if (!shown || shown.kind !== 'settings') return;

  const f = el('form', 'row');
  const name = el('input', 'grow');
  name.id = 'my-name';
  name.maxLength = 128;
  name.value = meView.ok ? meView.v.name : '';
  f.append(name, button('Save', 'secondary', () => f.requestSubmit()));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await call('PATCH', '/v1/users/me', { name: name.value.trim() });
    if (r.ok) {
      ctx.setName(ctx.me, r.v.name);
      ctx.toast('Name saved.');
    }
  });

  const photo = avatarSection(meView.ok ? meView.v.avatar : null);

  const ul = el('ul', 'list sessions');
  ul.id = 'session-list';
  for (const s of sessions.ok ? sessions.v.sessions : []) {
    const li = el('li', 'item session');
    li.dataset.session = s.session;
    if (s.current) li.classList.add('current');
    const d = el('div', 'grow');
    d.append(el('b', '', s.current ? 'This browser' : `Signed in ${new Date(s.created_at).toLocaleDateString()}`));
    const devs = s.devices.length ? `online: ${s.devices.join(', ')}` : 'not connected';
    const seen = s.last_seen ? `last seen ${dayLabel(s.last_seen)} ${clock(s.last_seen)}` : '';
    d.append(el('small', 'dim block', [devs, seen].filter(Boolean).join(' · ')));
    li.append(d);
    li.append(
      button('Sign out', 'secondary small', async () => {
        if (s.current) await ctx.dropPush();
        const r = await call('DELETE', `/v1/sessions/${enc(s.session)}`);
        if (!r.ok) return;
        if (s.current) ctx.logoutLocal('');
        else refresh();
      }),
    );
    ul.append(li);
  }
  const all = button('Sign out everywhere', 'danger', async () => {
    if (!confirm('Sign out of every browser and device?')) return;
    await ctx.dropPush();
    const r = await call('DELETE', '/v1/sessions?all=true');
    if (r.ok) ctx.logoutLocal('Signed out everywhere.');
  });
  all.id = 'signout-all';

  const bl = el('ul', 'list');
  bl.id = 'blocked-list';
  const list = blocks.ok ? blocks.v.blocked : [];
  for (const u of list) {
    const li = el('li', 'item');
    li.dataset.user = u;
    li.append(
      el('span', 'grow name', ctx.nameOf(u)),
      button('Unblock', 'secondary small', async () => {
        const r = await call('DELETE', `/v1/blocks/${enc(u)}`);
        if (r.ok) {
          ctx.blocked.delete(u);
          refresh();
        }
      }),
    );
    bl.append(li);
  }
  if (list.length === 0) bl.append(el('li', 'empty', 'Nobody is blocked.'));

  show('Settings', [
    section('Profile photo', photo),
    section('Display name', f),
    section('Signed-in browsers and devices', ul, all),
    section('Blocked users', bl),
  ]);
}

/**
 * This user's picture with Change and Remove: an image is uploaded
 * (`POST /v1/media`), then named as the avatar (`PATCH /v1/users/me`).
 */
function avatarSection(current) {
  const box = el('div', 'row my-avatar-row');
  const pic = el('div', 'my-avatar');
  pic.id = 'my-avatar';
  pic.append(ctx.avatarOf(ctx.me, 'large'));
  const input = el('input');
  input.type = 'file';
  input.accept = 'image/png,image/jpeg,image/gif,image/webp';
  input.id = 'avatar-input';
  input.hidden = true;
  const status = el('small', 'dim block');
  status.id = 'avatar-status';
  status.setAttribute('role', 'status');
  const change = button('Change photo', 'secondary small', () => input.click());
  const remove = button('Remove', 'secondary small', async () => {
    const r = await call('PATCH', '/v1/users/me', { avatar: '' });
    if (r.ok) {
      ctx.setAvatar(ctx.me, '');
      refresh();
    }
  });
  remove.hidden = !current;
  input.addEventListener('change', async () => {
    const file = input.files[0];
    input.value = '';
    if (!file) return;
    const checked = checkFile(file);
    if (!checked.error && !isImageType(checked.mime)) {
      checked.error = `“${file.name}” is not a photo (PNG, JPEG, GIF or WebP).`;
    }
    if (checked.error) {
      status.textContent = checked.error;
      return;
    }
    status.textContent = 'Uploading…';
    let m;
    try {
      m = await upload(file, checked.mime, file.name, (p) => {
        status.textContent = `Uploading… ${Math.round(p * 100)}%`;
      }).promise;
    } catch (e) {
      status.textContent = e.code === 'cancelled' ? '' : uploadError(e, file.name);
      return;
    }
    const r = await call('PATCH', '/v1/users/me', { avatar: m.media });
    if (!r.ok) {
      status.textContent = '';
      return;
    }
    ctx.setAvatar(ctx.me, r.v.avatar);
    status.textContent = 'Photo saved.';
    pic.replaceChildren(ctx.avatarOf(ctx.me, 'large'));
    remove.hidden = false;
  });
  const side = el('div', 'grow');
  const row = el('div', 'row wrap');
  row.append(change, remove);
  side.append(row, status, input);
  box.append(pic, side);
  return box;
}

// ---- search -------------------------------------------------------------

let searchTimer = null;
let searchSeq = 0;

async function runSearch(q) {
  const n = ++searchSeq;
  const state = $('search-state');
  const ul = $('search-results');
  if (!q.trim()) {
    ul.hidden = true;
    state.hidden = true;
    $('conv-list').hidden = false;
    return;
  }
  $('conv-list').hidden = true;
  $('no-convs').hidden = true;
  ul.hidden = false;
  if (!ctx.session?.online) {
    state.hidden = false;
    state.textContent = 'Searching needs a connection.';
    return;
  }
  let hits;
  try {
    hits = (await ctx.session.request({ type: 'search', q, limit: 50 })).hits;
  } catch (e) {
    if (n !== searchSeq) return;
    ul.replaceChildren();
    state.hidden = false;
    state.textContent = e.code === 'invalid' ? 'Type a word to search for.' : e.message;
    return;
  }
  if (n !== searchSeq) return;
  state.hidden = hits.length > 0;
  state.textContent = 'No messages found.';
  ul.replaceChildren(
    ...hits.map((m) => {
      const li = el('li', 'item hit');
      li.tabIndex = 0;
      li.dataset.conv = m.conv;
      li.dataset.seq = String(m.seq);
      const body = el('div', 'grow');
      const top = el('div', 'line');
      top.append(el('b', 'name', ctx.convName(ctx.conv(m.conv))));
      const t = el('small', 'time', listTime(m.ts));
      t.title = new Date(m.ts).toLocaleString();
      top.append(t);
      const who = m.from === ctx.me ? 'You' : ctx.nameOf(m.from);
      body.append(top, el('div', 'preview', `${who}: ${ctx.snippet(m)}`));
      li.append(body);
      const go = () => ctx.open(m.conv, m.seq);
      li.addEventListener('click', go);
      li.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') go();
      });
      return li;
    }),
  );
}

// ---- wiring -------------------------------------------------------------

/** Draws the shown panel again (after a push or a change). */
function refresh() {
  if (!shown) return;
  const a = document.activeElement;
  if (a && $('panel').contains(a) && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA')) return;
  if (shown.kind === 'settings') {
    settingsPanel();
    return;
  }
  const c = ctx.convs.get(shown.conv);
  if (!c) return;
  if (c.group) groupInfoPanel(c);
  else dmInfo(c);
}

export const panels = {
  info(c) {
    shown = { kind: 'info', conv: c.id };
    refresh();
  },
  settings() {
    shown = { kind: 'settings' };
    refresh();
  },
  refresh,
  close,
  /** Another conversation was opened: an info panel follows it. */
  follow() {
    const c = ctx?.openConv;
    if (shown?.kind === 'info' && c && shown.conv !== c.id) panels.info(c);
  },
};

export function initPanels(context) {
  ctx = context;
  $('panel-close').addEventListener('click', close);
  $('search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => runSearch($('search').value), 250);
  });
  $('search').addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      $('search').value = '';
      runSearch('');
    }
  });
}
