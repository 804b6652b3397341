// End-to-end test of the web client in headless Chromium:
//   node e2e.mjs URL OUTDIR
// Two users (a desktop page and a phone-sized page, each in its own
// browser context) register, befriend, chat, see presence, typing,
// delivered and read marks and unread badges, recall, use a group and
// older history, day dividers, multi-line messages, display names,
// jump-to-latest, delete-for-me, receipts restored on a new page and
// friend requests pushed; reply, edit, reactions and mentions (5.1),
// search (5.2), pin, mute, block, profile and sessions (5.3), and the
// group info panel with roles (5.4); photos, files (picked, dropped,
// pasted) and voice notes, refused and cancelled uploads, an avatar and a
// Web Push notification of the service worker (5.5); one page
// reloads and the server is restarted in the middle, and both pages must
// end with the same messages, none lost or doubled. Screenshots go to
// OUTDIR. The server runs with `media.max_bytes` = 262144 (web.rs).
//
// The server restart is asked of the driving test on stdout: a line
// `tern-e2e: stop` (the test stops the server and answers `stopped` on
// stdin), then `tern-e2e: start` (answered `started` once it listens on
// the same address again).

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const [url, outdir] = process.argv.slice(2);
if (!url || !outdir) {
  console.error('usage: node e2e.mjs URL OUTDIR');
  process.exit(2);
}
mkdirSync(outdir, { recursive: true });

const WAIT = 20000;
/** The server's `media.max_bytes` in this test (web.rs writes it). */
const MAX_BYTES = 262144;
const PASSWORD = 'password1';
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the driving test for `what` and waits for its answer. */
async function ask(what, answer) {
  process.stdout.write(`tern-e2e: ${what}\n`);
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== answer) throw new Error(`wanted ${answer}, got ${value}`);
}

function step(s) {
  console.error(`e2e: ${s}`);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.TERN_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // A microphone that plays a tone, allowed without asking.
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
  ],
});

function crc32(buf) {
  let crc = 0xffffffff;
  for (const byte of buf) {
    let c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A `w` x `h` RGB PNG whose pixel (x, y) is `rgb(x, y)`. */
function png(w, h, rgb) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) raw.set(rgb(x, y), row + 1 + x * 3);
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bits per channel
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Waits until `pred` (run in the page, may be async) is true. */
async function until(page, pred, arg, what) {
  const end = Date.now() + WAIT;
  for (;;) {
    if (await page.evaluate(pred, arg)) return;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await page.waitForTimeout(100);
  }
}

/** Whether the image `sel` is loaded (`naturalWidth` > 0). */
const imageLoaded = (page, sel) =>
  page.waitForFunction((s) => {
    const i = document.querySelector(s);
    return !!i && i.complete && i.naturalWidth > 0;
  }, sel);

const problems = [];
async function newPage(name, options) {
  const ctx = await browser.newContext(options);
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  // Leaving and dissolving ask first: the test says yes.
  page.on('dialog', (d) => d.accept());
  page.on('console', (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to/i.test(t)) problems.push(`${name}: ${t}`);
  });
  return page;
}

// Desktop for alice, a phone for bob. Alice's page may show notifications
// (its service worker gets a push).
const a = await newPage('alice', {
  viewport: { width: 1280, height: 800 },
  permissions: ['notifications', 'microphone'],
});
const b = await newPage('bob', {
  permissions: ['microphone'],
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
});

async function register(page, user) {
  await page.goto(url);
  await page.fill('#login-user', user);
  await page.fill('#login-pass', PASSWORD);
  await page.click('#register-btn');
  await page.waitForFunction((u) => document.getElementById('me-name').textContent === u, user);
  await page.waitForSelector('body[data-conn="online"]');
}

/** The texts of the open conversation's messages, in order. */
async function texts(page) {
  return page.$$eval('#msg-list li.msg:not(.system) .text', (els) => els.map((e) => e.textContent));
}

/** Waits until the open conversation shows exactly `want`. */
async function expectTexts(page, want, who) {
  try {
    await page.waitForFunction(
      (w) => {
        const got = [...document.querySelectorAll('#msg-list li.msg:not(.system) .text')].map(
          (e) => e.textContent,
        );
        return JSON.stringify(got) === JSON.stringify(w);
      },
      want,
      { timeout: WAIT },
    );
  } catch (e) {
    throw new Error(`${who} shows ${JSON.stringify(await texts(page))}, wanted ${JSON.stringify(want)}`);
  }
}

/** The mark on the own message whose text is `text`. */
async function waitMark(page, text, mark) {
  await page.waitForFunction(
    ([t, m]) =>
      [...document.querySelectorAll('#msg-list li.msg.mine')].some(
        (li) => li.querySelector('.text')?.textContent === t && li.dataset.mark === m,
      ),
    [text, mark],
    { timeout: WAIT },
  );
}

async function sendText(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

async function noDuplicates(page, who) {
  const ids = await page.$$eval('#msg-list li[data-msg-id]', (els) => els.map((e) => e.dataset.msgId));
  check(new Set(ids).size === ids.length, `${who} shows a message twice: ${ids}`);
}

const dm = 'dm:alice:bob';
const shot = (page, name) => page.screenshot({ path: join(outdir, name) });

try {
  step('register');
  await register(a, 'alice');
  await register(b, 'bob');

  step('befriend');
  await a.click('#tab-friends');
  await a.fill('#add-friend-user', 'bob');
  await a.click('#add-friend-form button[type=submit]');
  await a.waitForFunction(() => document.getElementById('friend-note').textContent.includes('bob'));
  await b.click('#tab-friends');
  await b.click('#incoming-list li[data-user="alice"] button:has-text("Accept")');
  await b.waitForSelector('#friend-list li[data-user="alice"]');
  // Alice's list moves by the pushed acceptance alone (no click, no
  // polling).
  await a.waitForSelector('#friend-list li[data-user="bob"]');

  step('presence');
  await a.waitForSelector('#friend-list li[data-user="bob"] .dot.online');
  await b.waitForSelector('#friend-list li[data-user="alice"] .dot.online');

  step('first message: sent, delivered, unread badge');
  await b.click('#tab-chats');
  await a.click('#friend-list li[data-user="bob"] button:has-text("Chat")');
  await a.waitForSelector('#composer:not([hidden])');
  await sendText(a, 'hello bob');
  await waitMark(a, 'hello bob', 'delivered');
  await b.waitForSelector(`#conv-list li[data-conv="${dm}"] .badge.unread:has-text("1")`);
  check((await b.textContent('#total-unread')) === '1', 'bob total unread 1');
  check(!(await b.isVisible('#conv')), 'phone shows one pane: the list');
  // Not read while bob has not opened it.
  check(
    await a.$eval('#msg-list li.msg.mine', (li) => li.dataset.mark === 'delivered'),
    'delivered, not read, before bob opens the conversation',
  );
  await shot(b, 'phone-list.png');

  step('read mark');
  await b.click(`#conv-list li[data-conv="${dm}"]`);
  await expectTexts(b, ['hello bob'], 'bob');
  check(!(await b.isVisible('#side')), 'phone shows one pane: the conversation');
  await waitMark(a, 'hello bob', 'read');
  await b.waitForSelector('#total-unread', { state: 'hidden' });

  step('typing');
  await b.fill('#text', 'hi al');
  await a.waitForFunction(() => document.getElementById('typing').textContent === 'bob is typing…');
  await b.fill('#text', '');
  await sendText(b, 'hi alice <b>not bold</b>');
  await expectTexts(a, ['hello bob', 'hi alice <b>not bold</b>'], 'alice');
  check((await a.$$('#msg-list b')).length === 0, 'user content is text, not HTML');
  await waitMark(b, 'hi alice <b>not bold</b>', 'read');
  check(
    (await a.$$eval('#msg-list li.day', (els) => els.map((e) => e.textContent))).join() === 'Today',
    'one day divider, "Today"',
  );

  step('a message of two lines: Shift+Enter, then Enter');
  await b.fill('#text', 'line one');
  await b.press('#text', 'Shift+Enter');
  await b.type('#text', 'line two');
  await b.press('#text', 'Enter');
  await expectTexts(a, ['hello bob', 'hi alice <b>not bold</b>', 'line one\nline two'], 'alice');
  // Another's message offers no recall, only delete-for-me.
  await a.click('#msg-list li.msg.theirs:last-child .bubble', { button: 'right' });
  check(await a.isVisible('#delete-btn'), 'delete offered');
  check(!(await a.isVisible('#recall-btn')), "no recall of another's message");
  await a.keyboard.press('Escape');

  step('recall');
  await sendText(a, 'oops');
  await expectTexts(b, ['hello bob', 'hi alice <b>not bold</b>', 'line one\nline two', 'oops'], 'bob');
  await waitMark(a, 'oops', 'read');
  await a.click('#msg-list li.msg.mine:last-child .bubble', { button: 'right' });
  await a.click('#recall-btn');
  const afterRecall = ['hello bob', 'hi alice <b>not bold</b>', 'line one\nline two', 'Message recalled'];
  await expectTexts(a, afterRecall, 'alice');
  await expectTexts(b, afterRecall, 'bob');

  step('reply: the quote shows above the bubble on both pages');
  await a.click('#msg-list li.msg.theirs:has-text("line two") .bubble', { button: 'right' });
  await a.click('#reply-btn');
  await a.waitForSelector('#compose-ctx:not([hidden]) :text("Reply to bob")');
  await sendText(a, 'a reply');
  await a.waitForSelector('#compose-ctx', { state: 'hidden' });
  await expectTexts(b, [...afterRecall, 'a reply'], 'bob sees the reply');
  await b.waitForSelector('#msg-list li.msg.theirs:last-child .quote .q-text:has-text("line one")');

  step('edit: marked edited on the other page by the push');
  await waitMark(a, 'a reply', 'read');
  await a.click('#msg-list li.msg.mine:last-child .bubble', { button: 'right' });
  check(await a.isVisible('#edit-btn'), 'edit offered for a fresh own message');
  await shot(a, 'desktop-menu.png');
  await a.click('#edit-btn');
  check((await a.inputValue('#text')) === 'a reply', 'the box holds the text to edit');
  await a.fill('#text', 'a reply, edited');
  await a.press('#text', 'Enter');
  const after51 = [...afterRecall, 'a reply, edited'];
  await expectTexts(a, after51, 'alice after the edit');
  await expectTexts(b, after51, 'bob after the edit');
  await b.waitForSelector('#msg-list li.msg.theirs:last-child .meta .edited');
  await b.waitForSelector('#msg-list li.msg.theirs:last-child .quote');

  step('reactions: a tap and a click, counted on both pages');
  await b.click('#msg-list li.msg.theirs:last-child .bubble');
  await b.click('#react-row button:has-text("👍")');
  await a.waitForSelector('#msg-list li.msg.mine:last-child .reactions .chip:has-text("👍 1")');
  await a.click('#msg-list li.msg.mine:last-child .reactions .chip');
  await b.waitForSelector('#msg-list li.msg.theirs:last-child .reactions .chip.own:has-text("👍 2")');
  await a.waitForSelector('#msg-list li.msg.mine:last-child .reactions .chip.own:has-text("👍 2")');
  await b.click('#msg-list li.msg.theirs:last-child .reactions .chip');
  await a.waitForSelector('#msg-list li.msg.mine:last-child .reactions .chip.own:has-text("👍 1")');
  await a.click('#msg-list li.msg.mine:last-child .reactions .chip');
  await b.waitForSelector('#msg-list li.msg.theirs:last-child .reactions', { state: 'detached' });
  await b.click('#msg-list li.msg.theirs:last-child .bubble');
  await b.click('#react-row button:has-text("❤️")');
  await a.waitForSelector('#msg-list li.msg.mine:last-child .reactions .chip:has-text("❤️ 1")');
  await shot(a, 'desktop-chat.png');
  await shot(b, 'phone-chat.png');

  step('group: create, add a member, chat');
  const carol = await fetch(`${url}v1/users`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: 'carol', password: PASSWORD, name: 'Carol Jones' }),
  });
  check(carol.status === 201, `carol registered (${carol.status})`);
  await a.click('#tab-chats');
  await a.click('#new-group-btn');
  await a.fill('#group-name', 'Launch crew');
  await a.fill('#group-members', 'bob');
  await a.click('#new-group-form button[type=submit]');
  await a.waitForFunction(() => document.getElementById('conv-title').textContent === 'Launch crew');
  await a.click('#add-members-btn');
  await a.fill('#add-members-users', 'carol');
  await a.click('#add-members-form button[type=submit]');
  await a.waitForSelector('#msg-list li.system:has-text("alice added carol")');
  await sendText(a, 'welcome, team');
  await expectTexts(a, ['welcome, team'], 'alice in the group');
  await b.click('#back-btn');
  await b.waitForSelector('#conv-list li:has-text("Launch crew") .badge.unread');
  await b.click('#conv-list li:has-text("Launch crew")');
  await expectTexts(b, ['welcome, team'], 'bob in the group');

  step('mention with @ completion');
  await b.click('#back-btn');
  await a.fill('#text', 'look @b');
  await a.waitForSelector('#mention-list li[data-user="bob"]');
  check(!(await a.isVisible('#mention-list li[data-user="carol"]')), 'completion filters by prefix');
  await a.press('#text', 'Enter');
  check((await a.inputValue('#text')) === 'look @bob ', 'completion inserted the id');
  await a.type('#text', 'here');
  await a.press('#text', 'Enter');
  await b.waitForSelector('#conv-list li:has-text("Launch crew") .badge.mention');
  await b.click('#conv-list li:has-text("Launch crew")');
  await expectTexts(b, ['welcome, team', 'look @bob here'], 'bob sees the mention');
  await b.waitForSelector('#msg-list li.msg.mentions-me .mention:text("@bob")');

  step('the owner recalls a member\'s message');
  await sendText(b, 'from bob');
  await expectTexts(a, ['welcome, team', 'look @bob here', 'from bob'], 'alice sees bob in the group');
  await a.click('#msg-list li.msg.theirs:has-text("from bob") .bubble', { button: 'right' });
  check(await a.isVisible('#recall-btn'), "the owner may recall a member's message");
  await a.click('#recall-btn');
  await expectTexts(b, ['welcome, team', 'look @bob here', 'Message recalled'], 'bob after the recall');

  step('group info: make an admin, announcement, role-appropriate controls');
  await a.click('#info-btn');
  await a.waitForSelector('#member-list li[data-user="bob"] button:has-text("Make admin")');
  await a.click('#member-list li[data-user="bob"] button:has-text("Make admin")');
  await b.waitForSelector('#msg-list li.system:has-text("alice made bob an admin")');
  await a.waitForSelector('#member-list li[data-user="bob"] .role.admin');
  await a.fill('#group-announcement', 'Ship on Friday');
  await a.click('button:has-text("Save announcement")');
  await b.waitForSelector('#announcement:has-text("Ship on Friday")');
  await shot(a, 'desktop-group.png');
  // Bob, an admin now: he may act on carol, not on the owner.
  await b.click('#info-btn');
  await b.waitForSelector('#member-list li[data-user="carol"] button:has-text("Mute 1 h")');
  check(
    (await b.$$('#member-list li[data-user="alice"] button')).length === 0,
    'an admin has no controls over the owner',
  );
  check(!(await b.isVisible('#dissolve-btn')), 'only the owner dissolves');
  check(await b.isVisible('#group-rename'), 'an admin may rename');
  await shot(b, 'phone-group-info.png');
  await b.click('#member-list li[data-user="carol"] button:has-text("Mute 1 h")');
  await a.waitForSelector('#msg-list li.system:has-text("bob muted carol")');
  // The panel now says carol is muted and offers only to lift it.
  await b.waitForSelector('#member-list li[data-user="carol"] .role.muted');
  await b.waitForSelector('#member-list li[data-user="carol"] button:has-text("Unmute")');
  check(
    !(await b.isVisible('#member-list li[data-user="carol"] button:has-text("Mute 1 h")')),
    'a muted member is offered Unmute, not Mute',
  );
  await b.click('#panel-close');
  await a.click('#panel-close');

  step('70 messages from carol to bob, for history on scroll');
  const login = await fetch(`${url}v1/sessions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: 'carol', password: PASSWORD }),
  });
  const { token } = await login.json();
  for (let i = 1; i <= 70; i++) {
    const r = await fetch(`${url}v1/messages`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ to: 'bob', client_msg_id: `c${i}`, kind: 'text', content: `carol ${i}` }),
    });
    check(r.status === 200, `carol's message ${i} (${r.status})`);
  }

  // Bob's page has them all (and acks them) before it reloads.
  await b.waitForSelector('#conv-list li[data-conv="dm:bob:carol"] .preview:has-text("carol 70")', {
    state: 'attached',
  });
  await b.waitForSelector('#conv-list li[data-conv="dm:bob:carol"] .name:has-text("Carol Jones")', {
    state: 'attached',
  });
  await b.waitForTimeout(300);

  step('search: a hit opens the conversation at the message');
  await b.waitForTimeout(1000); // findable within a second of its ok
  await b.click('#back-btn');
  await b.fill('#search', 'carol 12');
  await b.waitForSelector('#search-results li.hit[data-conv="dm:bob:carol"]');
  const hits = await b.$$eval('#search-results li.hit .preview', (els) => els.map((e) => e.textContent));
  check(JSON.stringify(hits) === JSON.stringify(['Carol Jones: carol 12']), `one hit: ${hits}`);
  await b.click('#search-results li.hit');
  await b.waitForSelector('#msg-list li.msg.hit[data-seq="12"]');
  const seen = await b.$eval('#msg-list li.msg.hit', (li) => {
    const r = li.getBoundingClientRect();
    const box = document.getElementById('msgs').getBoundingClientRect();
    return r.top >= box.top && r.bottom <= box.bottom && li.textContent.includes('carol 12');
  });
  check(seen, 'the hit is scrolled into view');
  await expectTexts(
    b,
    Array.from({ length: 70 }, (_, i) => `carol ${i + 1}`),
    'bob around the hit',
  );
  await noDuplicates(b, 'bob around the hit');
  await b.click('#back-btn');
  await b.fill('#search', '');
  await b.waitForSelector('#conv-list', { state: 'visible' });

  step('bob reloads; alice writes meanwhile');
  await a.click(`#conv-list li[data-conv="${dm}"]`);
  await b.reload();
  await sendText(a, 'are you there?');
  await b.waitForSelector('body[data-conn="online"]');
  await b.waitForSelector(`#conv-list li[data-conv="${dm}"] .badge.unread:has-text("1")`);
  await b.click(`#conv-list li[data-conv="${dm}"]`);
  const afterReload = [...after51, 'are you there?'];
  await expectTexts(b, afterReload, 'bob after the reload');
  await noDuplicates(b, 'bob');
  await waitMark(a, 'are you there?', 'read');

  step('history on scroll');
  await b.click('#back-btn');
  await b.click('#conv-list li[data-conv="dm:bob:carol"]');
  await b.waitForSelector('#msg-list li.msg');
  const first = await texts(b);
  // The newest page first (50; more only if some came again as offline
  // pushes), the rest on scrolling up.
  check(
    first.length >= 50 && first.length < 70 && first[first.length - 1] === 'carol 70',
    `the newest page first: ${first.length}`,
  );
  await b.$eval('#msgs', (el) => {
    el.scrollTop = 0;
  });
  await b.waitForSelector('#jump-btn:not([hidden])');
  await expectTexts(
    b,
    Array.from({ length: 70 }, (_, i) => `carol ${i + 1}`),
    'bob after scrolling up',
  );
  await noDuplicates(b, 'bob');
  await b.click('#jump-btn');
  await b.waitForSelector('#jump-btn', { state: 'hidden' });
  await b.click('#back-btn');
  await b.click(`#conv-list li[data-conv="${dm}"]`);

  step('server restart; alice writes while it is down');
  await ask('stop', 'stopped');
  await a.waitForSelector('body:not([data-conn="online"])');
  await sendText(a, 'sent while the server was down');
  await waitMark(a, 'sent while the server was down', 'pending');
  await ask('start', 'started');
  await a.waitForSelector('body[data-conn="online"]', { timeout: 40000 });
  await b.waitForSelector('body[data-conn="online"]', { timeout: 40000 });
  await waitMark(a, 'sent while the server was down', 'read');
  await sendText(b, 'back again');
  const end = [...afterReload, 'sent while the server was down', 'back again'];
  await expectTexts(a, end, 'alice at the end');
  await expectTexts(b, end, 'bob at the end');
  await noDuplicates(a, 'alice');
  await noDuplicates(b, 'bob');
  await waitMark(b, 'back again', 'read');

  step('a fresh page of alice sees the same conversation from history');
  const a2 = await newPage('alice-2', { viewport: { width: 1280, height: 800 } });
  // As a notification's click opens it: on the conversation, once signed in.
  await a2.goto(`${url}#conv=${encodeURIComponent(dm)}`);
  await a2.fill('#login-user', 'alice');
  await a2.fill('#login-pass', PASSWORD);
  await a2.click('#login-btn');
  await a2.waitForFunction(() => document.getElementById('conv-title').textContent === 'bob');
  check((await a2.evaluate(() => location.hash)) === '', 'the address loses #conv= once used');
  await a2.waitForSelector(`#conv-list li[data-conv="${dm}"]`);
  await a2.click(`#conv-list li[data-conv="${dm}"]`);
  await expectTexts(a2, end, 'alice on a second page');
  await noDuplicates(a2, 'alice on a second page');
  // Receipts come from the server, not from what this page was pushed.
  await waitMark(a2, 'sent while the server was down', 'read');
  await waitMark(a2, 'hello bob', 'read');

  // The edit, the quote and the reactions come from history too.
  await a2.waitForSelector('#msg-list li.msg.mine:has-text("a reply, edited") .meta .edited');
  await a2.waitForSelector('#msg-list li.msg.mine:has-text("a reply, edited") .quote');
  await a2.waitForSelector('#msg-list li.msg.mine:has-text("a reply, edited") .chip:has-text("❤️ 1")');

  step('pin and mute: the list sorts pinned first, other pages follow by push');
  await a2.click('#info-btn');
  await a2.click('#pin-btn');
  await a2.click('#mute-btn');
  await a.waitForSelector(`#conv-list li:first-child[data-conv="${dm}"].pinned.muted .muted-flag`);
  await a2.waitForSelector(`#conv-list li:first-child[data-conv="${dm}"].pinned`);
  await a2.click('#panel-close');

  step('display name: changed in settings, pushed to friends');
  await a2.click('#settings-btn');
  await a2.fill('#my-name', 'Alice Smith');
  await a2.click('#panel button:has-text("Save")');
  await b.waitForSelector(`#conv-list li[data-conv="${dm}"] .name:has-text("Alice Smith")`, { state: 'attached' });
  await a2.click('#panel-close');

  step('block and unblock: a blocked user cannot send');
  const carolSend = async (cid) =>
    (
      await fetch(`${url}v1/messages`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ to: 'bob', client_msg_id: cid, kind: 'text', content: cid }),
      })
    ).status;
  await b.click('#back-btn');
  await b.click('#conv-list li[data-conv="dm:bob:carol"]');
  await b.click('#info-btn');
  await b.click('#block-btn');
  await b.waitForSelector('#block-btn:has-text("Unblock")');
  check((await carolSend('blocked-1')) === 403, 'a blocked user gets 403');
  await b.click('#panel-close');
  await b.click('#back-btn');
  await b.click('#settings-btn');
  await b.click('#blocked-list li[data-user="carol"] button:has-text("Unblock")');
  await b.waitForSelector('#blocked-list li[data-user="carol"]', { state: 'detached' });
  check((await carolSend('unblocked-1')) === 200, 'unblocked: carol sends again');
  await b.click('#panel-close');
  await b.click(`#conv-list li[data-conv="${dm}"]`);

  step('delete for me: gone on this user\'s pages, kept for the other');
  await a2.click('#msg-list li.msg.mine .bubble >> nth=0', { button: 'right' });
  await a2.click('#delete-btn');
  await expectTexts(a2, end.slice(1), 'alice after deleting her first message');
  await expectTexts(b, end, 'bob keeps it');

  step('a photo: both pages show its preview, sized before it loads; the viewer opens and closes');
  const photo = png(480, 320, (x, y) => [
    255 - Math.round((y / 320) * 120),
    120 + Math.round((x / 480) * 80) - Math.round((y / 320) * 60),
    90 + Math.round((y / 320) * 140),
  ]);
  await a.setInputFiles('#file-input', { name: 'sunset.png', mimeType: 'image/png', buffer: photo });
  await imageLoaded(a, '#msg-list li.msg.mine.kind-image[data-msg-id] .att-image img');
  await imageLoaded(b, '#msg-list li.msg.theirs.kind-image .att-image img');
  const shape = await b.$eval('#msg-list li.msg.theirs.kind-image .att-image', (e) => {
    const r = e.getBoundingClientRect();
    return r.width / r.height;
  });
  check(Math.abs(shape - 1.5) < 0.03, `the preview has the photo's shape (${shape})`);
  const leaks = await b.evaluate(() => document.documentElement.outerHTML.includes(sessionStorage.getItem('tern.token')));
  check(!leaks, 'no token in the page (media come from blob: URLs)');
  await b.waitForSelector(`#conv-list li[data-conv="${dm}"] .preview:has-text("Photo")`, { state: 'attached' });
  await a.click('#msg-list li.msg.mine.kind-image .att-image');
  await a.waitForSelector('#viewer:not([hidden])');
  await a.waitForFunction(() => document.getElementById('viewer-img').naturalWidth === 480);
  await a.keyboard.press('Escape');
  await a.waitForSelector('#viewer', { state: 'hidden' });
  await b.click('#msg-list li.msg.theirs.kind-image .att-image');
  await b.waitForSelector('#viewer:not([hidden])');
  await b.waitForFunction(() => document.getElementById('viewer-img').naturalWidth === 480);
  await b.click('#viewer-img');
  await b.waitForSelector('#viewer', { state: 'hidden' });
  check(!(await b.isVisible('#menu')), 'opening a photo opens no menu');

  step('a file: name, size, and a download link that returns its bytes');
  const notes = Buffer.from('Tern release notes\n'.repeat(60));
  await a.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: notes });
  await b.waitForSelector('#msg-list li.msg.theirs.kind-file .file-name:text("notes.txt")');
  const sizeText = await b.textContent('#msg-list li.msg.theirs.kind-file .file-size');
  check(sizeText === '1.1 KB', `the file's size is shown (${sizeText})`);
  const [dl] = await Promise.all([
    b.waitForEvent('download'),
    b.click('#msg-list li.msg.theirs.kind-file .file-name'),
  ]);
  check(dl.suggestedFilename() === 'notes.txt', `saved as ${dl.suggestedFilename()}`);
  check(readFileSync(await dl.path()).equals(notes), 'the download is the file');

  step('refused uploads say why in words');
  await a.setInputFiles('#file-input', {
    name: 'big.bin',
    mimeType: 'application/octet-stream',
    buffer: Buffer.alloc(MAX_BYTES + 1, 7),
  });
  await a.waitForSelector('#msg-list li.upload.failed .error:has-text("“big.bin” is too large to send: the limit is 256 KB.")');
  await a.click('#msg-list li.upload.failed .up-cancel');
  await a.setInputFiles('#file-input', { name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<p>hi</p>') });
  await a.waitForSelector(
    '#msg-list li.upload.failed .error:has-text("“page.html” is a type of file this server does not accept.")',
  );
  await a.click('#msg-list li.upload.failed .up-cancel');
  await a.waitForSelector('#msg-list li.upload', { state: 'detached' });

  step('upload progress on a slow link, and cancel');
  const net = await a.context().newCDPSession(a);
  await net.send('Network.enable');
  await net.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: 50000,
  });
  await a.setInputFiles('#file-input', { name: 'slow.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(200000, 1) });
  await a.waitForFunction(() => {
    const f = document.querySelector('#msg-list li.upload .bar .fill');
    const p = f ? parseFloat(f.style.width) : 0;
    return p > 0 && p < 100;
  });
  await a.click('#msg-list li.upload .up-cancel');
  await a.waitForSelector('#msg-list li.upload', { state: 'detached' });
  await net.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });

  step('voice notes: click to record, and hold to record; playable on the other page');
  await a.click('#mic-btn');
  await a.waitForSelector('#recorder:not([hidden])');
  await a.waitForFunction(() => document.getElementById('rec-time').textContent === '0:02');
  await a.click('#rec-send');
  await a.waitForSelector('#recorder', { state: 'hidden' });
  await b.waitForSelector('#msg-list li.msg.theirs.kind-voice .att-voice');
  await b.waitForFunction(() => {
    const au = document.querySelector('#msg-list li.msg.theirs.kind-voice audio');
    return !!au && au.readyState >= 1 && !au.error;
  });
  const dur = await b.textContent('#msg-list li.msg.theirs.kind-voice .dur');
  check(/^0:0[2-4]$/.test(dur), `the voice note's length is shown (${dur})`);
  await b.click('#msg-list li.msg.theirs.kind-voice .play');
  await b.waitForFunction(() => document.querySelector('#msg-list li.msg.theirs.kind-voice audio').currentTime > 0);
  await b.click('#msg-list li.msg.theirs.kind-voice .play');
  await b.waitForSelector('#msg-list li.msg.theirs.kind-voice .att-voice:not(.playing)');
  const mic = await a.$('#mic-btn');
  const box = await mic.boundingBox();
  await a.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await a.mouse.down();
  await a.waitForFunction(() => document.getElementById('rec-time').textContent === '0:01');
  await a.mouse.up();
  await a.waitForSelector('#recorder', { state: 'hidden' });
  await b.waitForFunction(() => document.querySelectorAll('#msg-list li.msg.theirs.kind-voice audio').length === 2);
  // A recording cancelled is neither uploaded nor sent.
  await a.click('#mic-btn');
  await a.waitForSelector('#recorder:not([hidden])');
  await a.waitForFunction(() => document.getElementById('rec-time').textContent === '0:01');
  await a.click('#rec-cancel');
  await a.waitForSelector('#recorder', { state: 'hidden' });
  check(await a.isVisible('#mic-btn'), 'the message box is back after a cancelled recording');
  check((await a.$$('#msg-list li.upload')).length === 0, 'nothing uploads after a cancelled recording');
  check((await a.$$('#msg-list li.msg.mine.kind-voice')).length === 2, 'two voice notes sent, not three');
  check(
    (await b.$$('#msg-list li.msg.theirs.kind-file')).length === 1,
    'the cancelled and the refused uploads were not sent',
  );

  step('avatar: alice sets a photo, bob sees it in his list');
  await a.click('#settings-btn');
  const face = png(96, 96, (x, y) => {
    const d = Math.hypot(x - 48, y - 40);
    return d < 22 ? [255, 214, 150] : [40 + y, 110, 200 - y];
  });
  await a.setInputFiles('#avatar-input', { name: 'me.png', mimeType: 'image/png', buffer: face });
  await a.waitForSelector('#avatar-status:has-text("Photo saved.")');
  await imageLoaded(a, '#my-avatar .avatar img');
  await a.click('#panel-close');
  await imageLoaded(b, `#conv-list li[data-conv="${dm}"] .avatar img`);
  await imageLoaded(b, '#conv-avatar .avatar img');
  await imageLoaded(a, '#me-avatar .avatar img');
  check(
    (await b.textContent(`#conv-list li[data-conv="dm:bob:carol"] .avatar .initials`)) === 'CJ',
    'no avatar: initials',
  );

  step('service worker: a Web Push message is shown as a notification');
  await until(a, async () => (await navigator.serviceWorker.ready).active?.scriptURL.endsWith('/sw.js'), null,
    'the service worker is active');
  const sw = await a.context().newCDPSession(a);
  const regs = new Map();
  sw.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) regs.set(r.registrationId, r);
  });
  await sw.send('ServiceWorker.enable');
  const origin = new URL(url).origin;
  for (let i = 0; ![...regs.values()].some((r) => r.scopeURL === url && !r.isDeleted); i++) {
    check(i < 100, 'the service worker registration is reported');
    await a.waitForTimeout(100);
  }
  const reg = [...regs.values()].find((r) => r.scopeURL === url && !r.isDeleted);
  await sw.send('ServiceWorker.deliverPushMessage', {
    origin,
    registrationId: reg.registrationId,
    data: JSON.stringify({ title: 'Bob', body: 'see you at 6', conv: dm, seq: 99, from: 'bob', badge: 3 }),
  });
  await until(
    a,
    async () => {
      const n = await (await navigator.serviceWorker.ready).getNotifications();
      return n.some((x) => x.title === 'Bob' && x.body === 'see you at 6' && x.tag === 'dm:alice:bob');
    },
    null,
    'the notification is shown',
  );
  // A click on a notification: the worker tells the page which
  // conversation to open (headless Chromium cannot click one itself).
  const group = await a.getAttribute('#conv-list li:has-text("Launch crew")', 'data-conv');
  await a.evaluate((conv) => {
    navigator.serviceWorker.dispatchEvent(new MessageEvent('message', { data: { type: 'open', conv } }));
  }, group);
  await a.waitForFunction(() => document.getElementById('conv-title').textContent === 'Launch crew');
  await a.click(`#conv-list li[data-conv="${dm}"]`);
  await a.waitForFunction(() => document.getElementById('conv-title').textContent === 'bob');

  await shot(a, 'desktop.png');
  await shot(b, 'phone.png');

  step('dropping a file on the conversation, and pasting a picture, attach them too');
  const dropped = await a.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['dropped on the conversation'], 'dropped.txt', { type: 'text/plain' }));
    return dt;
  });
  await a.dispatchEvent('#conv', 'dragenter', { dataTransfer: dropped });
  await a.waitForSelector('#drop-zone:not([hidden])');
  await a.dispatchEvent('#msgs', 'drop', { dataTransfer: dropped });
  await a.waitForSelector('#drop-zone', { state: 'hidden' });
  await b.waitForSelector('#msg-list li.msg.theirs.kind-file .file-name:text("dropped.txt")');
  await a.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 64;
    c.height = 48;
    const g = c.getContext('2d');
    g.fillStyle = '#2a9ef1';
    g.fillRect(0, 0, 64, 48);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
    document
      .getElementById('text')
      .dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  });
  await b.waitForFunction(
    () => document.querySelectorAll('#msg-list li.msg.theirs.kind-image .att-image.loaded').length === 2,
  );
  check((await a.inputValue('#text')) === '', 'a pasted picture is not pasted as text');

  step('dissolve: the group stays readable, the message box is closed');
  await a2.click('#conv-list li:has-text("Launch crew")');
  await a2.click('#info-btn');
  await a2.click('#dissolve-btn');
  await a2.waitForSelector('#msg-list li.system:has-text("dissolved the group")');
  await a2.waitForSelector('#text[disabled]');
  await a2.waitForSelector('#panel :text("This group was dissolved")');
  check(!(await a2.isVisible('#leave-btn')), 'no leaving a dissolved group');
  await b.waitForSelector('#conv-list li:has-text("Launch crew") .preview:has-text("dissolved the group")', {
    state: 'attached',
  });
  await a2.click('#panel-close');

  step('dark mode follows the system setting');
  const light = await a2.$eval('#msgs', (e) => getComputedStyle(e).backgroundColor);
  await a2.emulateMedia({ colorScheme: 'dark' });
  const dark = await a2.$eval('#msgs', (e) => getComputedStyle(e).backgroundColor);
  check(light !== dark, `dark background differs (${light} / ${dark})`);
  await a2.click(`#conv-list li[data-conv="${dm}"]`);
  await imageLoaded(a2, '#msg-list li.msg.mine.kind-image .att-image img');
  await shot(a2, 'desktop-dark.png');
  await a2.emulateMedia({ colorScheme: 'light' });

  step('sessions: this page signs out alice\'s other page');
  await a2.click('#settings-btn');
  await a2.waitForSelector('#session-list li.session.current');
  const others = await a2.$$('#session-list li.session:not(.current)');
  check(others.length === 1, `alice has one other session (${others.length})`);
  await shot(a2, 'desktop-settings.png');
  await a2.click('#session-list li.session:not(.current) button:has-text("Sign out")');
  await a.waitForSelector('#login:not([hidden])');
  await a2.waitForFunction(() => document.querySelectorAll('#session-list li.session').length === 1);
  check(await a2.isVisible('#app'), 'this page is still signed in');

  check(problems.length === 0, `no page errors: ${problems.join('; ')}`);
  step('passed');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`e2e: FAILED: ${e.stack || e}`);
  for (const p of problems) console.error(`e2e: ${p}`);
  await shot(a, 'failure-alice.png').catch(() => {});
  await shot(b, 'failure-bob.png').catch(() => {});
  await browser.close().catch(() => {});
  process.exit(1);
}
