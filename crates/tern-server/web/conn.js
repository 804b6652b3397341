// The wire side of the web client: the HTTP API over fetch and one
// WebSocket session (PROTOCOL.md 2 and 3) that reconnects with backoff.
// Nothing here touches the page.

/** An error answer, HTTP or WebSocket: `code` is the protocol's code. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

/** `fetch` against the HTTP API with the JSON error shape of PROTOCOL.md 3. */
export async function api(method, path, token, body) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError('unavailable', 'the server cannot be reached', 0);
  }
  if (r.status === 204) return null;
  let v = null;
  try {
    v = await r.json();
  } catch (e) {
    v = null;
  }
  if (!r.ok) {
    throw new ApiError(v?.code || 'unavailable', v?.message || r.statusText, r.status);
  }
  return v;
}

const PING_MS = 30000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;

/**
 * One logical session over successive WebSockets. `handlers`:
 * - `onOpen()` after each accepted `auth` (before the offline messages),
 * - `onFrame(frame)` for every pushed frame (`batch` already unpacked),
 * - `onState(state)` with `connecting`, `online` or `offline`,
 * - `onFatal(code, reason)` when the server ends the session for good
 *   (token refused: 4001; replaced by the same device: 4009).
 */
export class Session {
  constructor(token, device, handlers) {
    this.token = token;
    this.device = device;
    this.h = handlers;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.attempt = 0;
    this.stopped = false;
    this.pingTimer = null;
    this.retryTimer = null;
    this.authed = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  get online() {
    return this.authed && this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped) return;
    this.h.onState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    this.ws = ws;
    this.authed = false;
    ws.onopen = () => {
      const id = String(this.nextId++);
      this.pending.set(id, {
        resolve: () => {
          this.authed = true;
          this.attempt = 0;
          this.h.onState('online');
          this.h.onOpen();
        },
        reject: () => {},
      });
      ws.send(JSON.stringify({ type: 'auth', id, token: this.token, device: this.device }));
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.post({ type: 'ping' }), PING_MS);
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      this.dispatch(f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.authed = false;
      clearInterval(this.pingTimer);
      for (const p of this.pending.values()) {
        p.reject(new ApiError('unavailable', 'connection lost'));
      }
      this.pending.clear();
      this.h.onState('offline');
      if (ev.code === 4001 || ev.code === 4009) {
        this.stopped = true;
        this.h.onFatal(ev.code, ev.reason);
        return;
      }
      this.retry();
    };
  }

  /** The next attempt after an exponential, jittered pause. */
  retry() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    const wait = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }

  /** Reconnects at once (the browser says the network is back). */
  kick() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.connect();
  }

  dispatch(f) {
    if (f.type === 'batch' && Array.isArray(f.frames)) {
      for (const g of f.frames) this.dispatch(g);
      return;
    }
    if ((f.type === 'ok' || f.type === 'error' || f.type === 'pong') && f.id !== undefined) {
      const p = this.pending.get(f.id);
      if (p) {
        this.pending.delete(f.id);
        if (f.type === 'error') p.reject(new ApiError(f.code, f.message));
        else p.resolve(f);
        return;
      }
    }
    this.h.onFrame(f);
  }

  /** A request with an `id`; resolves with its `ok`, rejects with its `error`. */
  request(frame) {
    if (!this.online) {
      return Promise.reject(new ApiError('unavailable', 'not connected'));
    }
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** A frame without a reply (`ack`, `typing`, `ping`); dropped when offline. */
  post(frame) {
    if (this.online) this.ws.send(JSON.stringify(frame));
  }
}
