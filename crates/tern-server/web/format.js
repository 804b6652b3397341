// Small helpers of the web client that know nothing of its state:
// element building, ids, and how times and days are written.

/** A random id: a UUID where the page is a secure context, hex otherwise. */
export function randomId() {
  if (window.crypto?.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function clock(ts) {
  const d = new Date(ts);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** Local midnight of `ts`'s day: messages of one day share it. */
export function dayStart(ts) {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export const DAY_MS = 86400000;

/** "Today", "Yesterday", a weekday this week, else the date. */
export function dayLabel(ts) {
  const today = dayStart(Date.now());
  const day = dayStart(ts);
  if (day === today) return 'Today';
  if (day === dayStart(today - DAY_MS / 2)) return 'Yesterday';
  const d = new Date(ts);
  if (today - day < 6 * DAY_MS) return d.toLocaleDateString(undefined, { weekday: 'long' });
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return d.toLocaleDateString(undefined, {
    day: 'numeric',
    month: 'long',
    year: sameYear ? undefined : 'numeric',
  });
}

/** The time in the conversation list: the clock today, else the day. */
export function listTime(ts) {
  const today = dayStart(Date.now());
  const day = dayStart(ts);
  if (day === today) return clock(ts);
  if (day === dayStart(today - DAY_MS / 2)) return 'Yesterday';
  const d = new Date(ts);
  if (today - day < 6 * DAY_MS) return d.toLocaleDateString(undefined, { weekday: 'short' });
  if (d.getFullYear() === new Date().getFullYear()) {
    return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  }
  return d.toLocaleDateString();
}
