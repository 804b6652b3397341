// Web Push (PROTOCOL.md 5.5) in the web client: the service worker
// (`/sw.js`) and this browser's push subscription, registered for the
// signed-in user as one device. Everything here fails quietly (a line in
// the console): a browser without a push service, a server without Web
// Push (`GET /v1/push/webpush-key` is 404) or a refused permission leave
// the client as it is.

import { api } from './conn.js';

const store = window.sessionStorage;
/** The registered push device of this tab's user (to remove at sign-out). */
const KEY = 'tern.push-device';

function quiet(what, e) {
  console.info(`tern: ${what}${e ? `: ${e.message || e}` : ''}`);
}

/** Registers the service worker (once per page load). */
export async function registerWorker() {
  if (!('serviceWorker' in navigator)) {
    quiet('no service worker in this browser');
    return null;
  }
  try {
    return await navigator.serviceWorker.register('/sw.js');
  } catch (e) {
    quiet('the service worker was not registered', e);
    return null;
  }
}

function fromBase64Url(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(s.length / 4) * 4, '='));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

function sameBytes(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * The device id of a subscription: the same for every tab of this browser
 * (they share one subscription), so registering again replaces, never adds.
 */
async function deviceOf(endpoint) {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(endpoint));
  const hex = Array.from(new Uint8Array(d).slice(0, 12), (x) => x.toString(16).padStart(2, '0')).join('');
  return `webpush-${hex}`;
}

/**
 * After sign-in: when notifications are allowed and the server has a Web
 * Push key, subscribes this browser with it and registers the
 * subscription for the user (`PUT /v1/push/{device}`).
 */
export async function subscribePush(token) {
  try {
    if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) {
      quiet('no Web Push in this browser');
      return;
    }
    if (Notification.permission !== 'granted') return;
    let key;
    try {
      key = (await api('GET', '/v1/push/webpush-key', token)).public_key;
    } catch (e) {
      quiet(e.status === 404 ? 'Web Push is not configured on this server' : 'no Web Push key', e.status === 404 ? null : e);
      return;
    }
    const appKey = fromBase64Url(key);
    const reg = await navigator.serviceWorker.ready;
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameBytes(sub.options.applicationServerKey, appKey)) {
      // The server's key changed: the old subscription is of no use.
      await sub.unsubscribe();
      sub = null;
    }
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: appKey });
    const j = sub.toJSON();
    const device = await deviceOf(j.endpoint);
    await api('PUT', `/v1/push/${encodeURIComponent(device)}`, token, {
      provider: 'webpush',
      endpoint: j.endpoint,
      keys: { p256dh: j.keys.p256dh, auth: j.keys.auth },
    });
    store.setItem(KEY, device);
  } catch (e) {
    quiet('push notifications are not set up', e);
  }
}

/**
 * At sign-out, while the token is still valid: the user's registration of
 * this browser goes (`DELETE /v1/push/{device}`). The browser keeps its
 * subscription: another tab may have registered it for another user.
 */
export async function unsubscribePush(token) {
  const device = store.getItem(KEY);
  if (!device) return;
  store.removeItem(KEY);
  try {
    await api('DELETE', `/v1/push/${encodeURIComponent(device)}`, token);
  } catch (e) {
    quiet('the push registration was not removed', e);
  }
}

/** Calls `open(conv)` when a notification of the service worker is clicked. */
export function onNotificationClick(open) {
  navigator.serviceWorker?.addEventListener('message', (ev) => {
    if (ev.data?.type === 'open' && typeof ev.data.conv === 'string') open(ev.data.conv);
  });
}
