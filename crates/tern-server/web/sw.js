// The Tern web client's service worker: Web Push notifications (PROTOCOL.md
// 5.5). A push carries `{"title","body","conv","seq","from","badge"}`
// (tern-push's webpush provider); it is shown as one notification per
// conversation, and a click focuses a Tern tab on that conversation (or
// opens one). The worker handles no fetch: the page loads as without it.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (ev) => ev.waitUntil(self.clients.claim()));

self.addEventListener('push', (ev) => {
  let d = {};
  try {
    d = ev.data ? ev.data.json() : {};
  } catch (e) {
    d = { body: ev.data ? ev.data.text() : '' };
  }
  const conv = typeof d.conv === 'string' ? d.conv : '';
  const shown = self.registration.showNotification(String(d.title || 'Tern'), {
    body: String(d.body || 'New message'),
    // One notification per conversation: a newer push replaces it.
    tag: conv || 'tern',
    renotify: true,
    icon: '/web/icon.svg',
    data: { conv, seq: d.seq },
  });
  const badge =
    Number.isFinite(d.badge) && self.navigator.setAppBadge
      ? self.navigator.setAppBadge(d.badge).catch(() => {})
      : Promise.resolve();
  ev.waitUntil(Promise.all([shown, badge]));
});

self.addEventListener('notificationclick', (ev) => {
  ev.notification.close();
  const conv = ev.notification.data?.conv || '';
  ev.waitUntil(
    (async () => {
      const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const mine = wins.find((w) => new URL(w.url).origin === self.location.origin);
      if (mine) {
        await mine.focus();
        if (conv) mine.postMessage({ type: 'open', conv });
        return;
      }
      await self.clients.openWindow(conv ? `/#conv=${encodeURIComponent(conv)}` : '/');
    })(),
  );
});
