// Media in the web client (PROTOCOL.md 5.5): uploads with progress, what
// an image, voice or file message shows, the image viewer, voice
// recording and avatars. Nothing here holds conversation state.
//
// The token stays out of URLs: media are fetched with an `Authorization`
// header and shown from `blob:` URLs (images, voice notes) or saved from
// one (files). No `?token=` reaches a server log, the browser history, a
// copied link or a `Referer`.

import { ApiError } from './conn.js';
import { el } from './format.js';

let ctx = null;

/** `context`: `token` (a getter), `toast(text)`, `maxBytes` (a getter). */
export function initMedia(context) {
  ctx = context;
  wireViewer();
}

/** Image types the server makes thumbnails of: sent as kind `image`. */
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
export const isImageType = (t) => IMAGE_TYPES.includes(t);

/** A preview's longest side, in CSS pixels, and the thumbnail asked for it. */
const PREVIEW_PX = 320;
const THUMB = window.devicePixelRatio > 1 ? 2 * PREVIEW_PX : PREVIEW_PX;
const AVATAR_THUMB = 128;
/** Object URLs and message nodes kept; the oldest go first. */
const BLOB_MAX = 400;
const NODE_MAX = 300;
/** The longest voice note: the recorder stops by itself after it. */
export const VOICE_MAX_SECS = 300;
/** A name sent as `?filename=`: at most 255 bytes (the server's bound). */
const FILENAME_BYTES = 255;

export function formatSize(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1048576).toFixed(1)} MB`;
  return `${(n / 1073741824).toFixed(1)} GB`;
}

export function formatDuration(secs) {
  const s = Math.max(0, Math.round(Number(secs) || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** The media id of a message's content: `media`, else the end of `url`. */
export function mediaId(content) {
  if (!content || typeof content !== 'object') return null;
  if (typeof content.media === 'string') return content.media;
  const m = typeof content.url === 'string' && content.url.match(/\/v1\/media\/([0-9a-f]{32})$/);
  return m ? m[1] : null;
}

// ---- fetching ------------------------------------------------------------

const blobs = new Map(); // "id:thumb" -> Promise<object URL>, oldest first
const ready = new Map(); // "id:thumb" -> object URL, once fetched

/** An object URL of media `id` (its thumbnail of side `thumb` if given). */
export function blobUrl(id, thumb) {
  const key = `${id}:${thumb || ''}`;
  const had = blobs.get(key);
  if (had) {
    blobs.delete(key);
    blobs.set(key, had);
    return had;
  }
  const p = (async () => {
    const q = thumb ? `?thumb=${thumb}` : '';
    let r;
    try {
      r = await fetch(`/v1/media/${encodeURIComponent(id)}${q}`, {
        headers: { Authorization: `Bearer ${ctx.token}` },
      });
    } catch (e) {
      throw new ApiError('unavailable', 'the server cannot be reached', 0);
    }
    if (!r.ok) throw await errorOf(r);
    const url = URL.createObjectURL(await r.blob());
    ready.set(key, url);
    return url;
  })();
  p.catch(() => {
    if (blobs.get(key) === p) blobs.delete(key);
  });
  blobs.set(key, p);
  while (blobs.size > BLOB_MAX) {
    const [k, old] = blobs.entries().next().value;
    blobs.delete(k);
    ready.delete(k);
    old.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  }
  return p;
}

/** Sets `img.src` to media `id`: at once when already fetched. */
function loadInto(img, id, thumb, onFail) {
  const now = ready.get(`${id}:${thumb || ''}`);
  if (now) {
    img.src = now;
    return;
  }
  blobUrl(id, thumb)
    .then((u) => {
      img.src = u;
    })
    .catch((e) => onFail?.(e));
}

async function errorOf(r) {
  let v = null;
  try {
    v = await r.json();
  } catch (e) {
    v = null;
  }
  return new ApiError(v?.code || 'unavailable', v?.message || r.statusText, r.status);
}

/** Saves media `id` as a file named `name` (fetched with the token). */
export async function download(id, name) {
  try {
    const url = await blobUrl(id);
    const a = el('a');
    a.href = url;
    a.download = name || 'download';
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    ctx.toast(e.status === 404 ? 'This file is no longer on the server.' : `Download failed: ${e.message}`);
  }
}

/** Forgets every fetched media (signing out). */
export function resetMedia() {
  for (const p of blobs.values()) p.then((u) => URL.revokeObjectURL(u)).catch(() => {});
  blobs.clear();
  ready.clear();
  nodes.clear();
  closeViewer();
}

// ---- uploading ------------------------------------------------------------

/** `name` cut to what `?filename=` takes: 255 bytes, no control characters. */
function filenameParam(name) {
  let n = String(name || '').replace(/\p{Cc}/gu, '');
  const enc = new TextEncoder();
  while (enc.encode(n).length > FILENAME_BYTES) n = n.slice(0, -1);
  return n;
}

/**
 * Uploads `blob` as `mime` (`POST /v1/media`). Returns `{promise, abort}`;
 * `promise` resolves with the server's `{media, url, size, mime, sha256}`
 * or rejects with an `ApiError` (`cancelled` after `abort()`).
 */
export function upload(blob, mime, name, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const q = name ? `?filename=${encodeURIComponent(filenameParam(name))}` : '';
    xhr.open('POST', `/v1/media${q}`);
    xhr.setRequestHeader('Authorization', `Bearer ${ctx.token}`);
    xhr.setRequestHeader('Content-Type', mime);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable && ev.total > 0) onProgress?.(ev.loaded / ev.total);
    };
    xhr.onload = () => {
      const v = xhr.response;
      if (xhr.status === 201 && v?.media) resolve(v);
      else reject(new ApiError(v?.code || 'unavailable', v?.message || xhr.statusText, xhr.status));
    };
    xhr.onerror = () => reject(new ApiError('unavailable', 'the server cannot be reached', 0));
    xhr.onabort = () => reject(new ApiError('cancelled', 'cancelled', 0));
    xhr.send(blob);
  });
  return { promise, abort: () => xhr.abort() };
}

/** What went wrong with uploading `name`, in words. */
export function uploadError(e, name) {
  const what = name ? `“${name}”` : 'This file';
  if (e.status === 413 || e.code === 'content_too_large') {
    return `${what} is too large to send: the limit is ${formatSize(ctx.maxBytes)}.`;
  }
  if (e.status === 415 || e.code === 'unsupported_media') {
    return `${what} is a type of file this server does not accept.`;
  }
  if (e.code === 'unavailable') return `${what} was not sent: the server cannot be reached.`;
  return `${what} was not sent: ${e.message}`;
}

/** The size and type an upload is sent with; `error` if refused here. */
export function checkFile(file) {
  const mime = (file.type || 'application/octet-stream').split(';')[0].trim().toLowerCase();
  if (file.size > ctx.maxBytes) {
    return { error: uploadError(new ApiError('content_too_large', '', 413), file.name) };
  }
  if (file.size === 0) return { error: `“${file.name}” is empty.` };
  return { mime };
}

/** An image's pixel size, read in the browser (for a layout without jumps). */
export async function imageSize(file) {
  try {
    const b = await createImageBitmap(file);
    const s = { w: b.width, h: b.height };
    b.close();
    return s;
  } catch (e) {
    return null;
  }
}

// ---- message content --------------------------------------------------------

const nodes = new Map(); // message key -> element, oldest first

/**
 * The attachment of an image, voice or file message. The node is kept per
 * message (`key`): drawing the list again keeps a playing voice note and a
 * loaded image as they are.
 */
export function attachment(m, key) {
  if (key && nodes.has(key)) {
    const n = nodes.get(key);
    nodes.delete(key);
    nodes.set(key, n);
    return n;
  }
  const c = m.content && typeof m.content === 'object' ? m.content : {};
  const node = m.kind === 'image' ? imageNode(c) : m.kind === 'voice' ? voiceNode(c) : fileNode(c);
  if (key) {
    nodes.set(key, node);
    while (nodes.size > NODE_MAX) nodes.delete(nodes.keys().next().value);
  }
  return node;
}

/** The shown size of a `w` x `h` image: its longest side at most PREVIEW_PX. */
function fit(w, h) {
  if (!(w > 0 && h > 0)) return { w: 240, h: 180 };
  const k = Math.min(1, PREVIEW_PX / Math.max(w, h));
  // A thin image keeps a bubble one can still see and tap.
  return { w: Math.max(80, Math.round(w * k)), h: Math.max(60, Math.round(h * k)) };
}

function imageNode(c) {
  const id = mediaId(c);
  const box = el('button', 'att-image');
  box.type = 'button';
  box.title = c.name ? `${c.name} — open` : 'Open the photo';
  const s = fit(c.w, c.h);
  box.style.width = `${s.w}px`;
  box.style.aspectRatio = `${s.w} / ${s.h}`;
  const img = el('img');
  img.alt = c.name || 'Photo';
  img.decoding = 'async';
  box.append(img);
  if (id) {
    loadInto(img, id, THUMB, () => box.classList.add('failed'));
    img.addEventListener('load', () => box.classList.add('loaded'));
  } else {
    box.classList.add('failed');
  }
  box.addEventListener('click', (ev) => {
    ev.stopPropagation();
    if (id) openViewer(id, c.name || 'photo');
  });
  return box;
}

/** A file's icon: its extension on a coloured sheet. */
function extOf(name) {
  const m = String(name || '').match(/\.([A-Za-z0-9]{1,5})$/);
  return m ? m[1].toUpperCase() : 'FILE';
}

function fileNode(c) {
  const id = mediaId(c);
  const name = typeof c.name === 'string' && c.name ? c.name : 'file';
  const box = el('div', 'att-file');
  const icon = el('span', 'file-icon', extOf(name));
  const body = el('div', 'grow');
  const link = el('a', 'file-name', name);
  // The link names the media; a click fetches it with the token (the
  // address alone downloads nothing).
  if (id) link.href = `/v1/media/${id}`;
  link.download = name;
  link.addEventListener('click', (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    if (id) download(id, name);
  });
  const size = el('small', 'file-size', formatSize(Number(c.size)));
  body.append(link, size);
  box.append(icon, body);
  return box;
}

function voiceNode(c) {
  const id = mediaId(c);
  const box = el('div', 'att-voice');
  const play = el('button', 'play');
  play.type = 'button';
  play.setAttribute('aria-label', 'Play the voice message');
  const track = el('div', 'track');
  const fill = el('span', 'fill');
  track.append(fill);
  const known = Number(c.duration) > 0 ? Number(c.duration) : 0;
  const time = el('small', 'dur', formatDuration(known));
  const audio = el('audio');
  audio.preload = 'auto';
  box.append(play, track, time, audio);
  if (id) {
    blobUrl(id)
      .then((u) => {
        audio.src = u;
      })
      .catch(() => box.classList.add('failed'));
  } else {
    box.classList.add('failed');
  }
  // A recording's own header often has no length: the content's counts.
  const total = () => (Number.isFinite(audio.duration) && audio.duration > 0 ? audio.duration : known);
  const draw = () => {
    const t = total();
    fill.style.width = t ? `${Math.min(100, (audio.currentTime / t) * 100)}%` : '0';
    // The length while stopped, the position while playing.
    time.textContent = formatDuration(audio.paused ? t : audio.currentTime);
    box.classList.toggle('playing', !audio.paused);
    play.setAttribute('aria-label', audio.paused ? 'Play the voice message' : 'Pause');
  };
  for (const ev of ['play', 'pause', 'timeupdate', 'loadedmetadata']) audio.addEventListener(ev, draw);
  audio.addEventListener('ended', () => {
    audio.currentTime = 0;
    draw();
  });
  play.addEventListener('click', (ev) => {
    ev.stopPropagation();
    if (audio.paused) {
      for (const other of document.querySelectorAll('.att-voice audio')) if (other !== audio) other.pause();
      audio.play().catch((e) => ctx.toast(`Cannot play this voice message: ${e.message}`));
    } else {
      audio.pause();
    }
  });
  track.addEventListener('click', (ev) => {
    ev.stopPropagation();
    const t = total();
    if (!t) return;
    const r = track.getBoundingClientRect();
    audio.currentTime = Math.max(0, Math.min(t, ((ev.clientX - r.left) / r.width) * t));
  });
  return box;
}

// ---- the viewer -----------------------------------------------------------

const $ = (id) => document.getElementById(id);
let viewing = null; // {id, name}

function openViewer(id, name) {
  viewing = { id, name };
  const img = $('viewer-img');
  img.removeAttribute('src');
  img.alt = name;
  $('viewer-name').textContent = name;
  $('viewer').hidden = false;
  loadInto(img, id, null, (e) => {
    $('viewer-name').textContent = `${name}: ${e.message}`;
  });
  $('viewer-close').focus();
}

export function closeViewer() {
  viewing = null;
  const v = $('viewer');
  if (v) v.hidden = true;
}

export function viewerOpen() {
  return !!viewing;
}

function wireViewer() {
  $('viewer').addEventListener('click', (ev) => {
    if (ev.target === $('viewer') || ev.target === $('viewer-img')) closeViewer();
  });
  $('viewer-close').addEventListener('click', closeViewer);
  $('viewer-download').addEventListener('click', (ev) => {
    ev.preventDefault();
    if (viewing) download(viewing.id, viewing.name);
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && viewing) closeViewer();
  });
}

// ---- voice recording --------------------------------------------------------

/** Whether this browser can record a voice note. */
export function canRecord() {
  return !!(window.MediaRecorder && navigator.mediaDevices?.getUserMedia);
}

/**
 * Starts recording from the microphone. Resolves with `{stop, cancel,
 * started}`: `stop()` resolves with `{blob, mime, duration}` (seconds).
 */
export async function record(onTick) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const types = ['audio/webm;codecs=opus', 'audio/ogg;codecs=opus', 'audio/mp4', 'audio/webm'];
  const type = types.find((t) => MediaRecorder.isTypeSupported(t));
  const rec = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const chunks = [];
  rec.ondataavailable = (ev) => {
    if (ev.data.size) chunks.push(ev.data);
  };
  const started = performance.now();
  const secs = () => (performance.now() - started) / 1000;
  const done = new Promise((resolve) => {
    rec.onstop = () => {
      for (const t of stream.getTracks()) t.stop();
      resolve();
    };
  });
  rec.start(250);
  let stopped = null;
  const stop = () => {
    if (!stopped) {
      const duration = Math.round(secs() * 10) / 10;
      clearInterval(tick);
      if (rec.state !== 'inactive') rec.stop();
      stopped = done.then(() => {
        const mime = (rec.mimeType || type || 'audio/webm').split(';')[0];
        return { blob: new Blob(chunks, { type: mime }), mime, duration };
      });
    }
    return stopped;
  };
  const tick = setInterval(() => {
    onTick?.(secs());
    if (secs() >= VOICE_MAX_SECS) stop();
  }, 200);
  return { stop, cancel: () => stop().then(() => {}), started };
}

// ---- avatars ---------------------------------------------------------------

const COLOURS = 8;

function colourOf(key) {
  let h = 0;
  for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % COLOURS;
}

export function initials(name) {
  const words = String(name || '?')
    .trim()
    .split(/[\s._-]+/)
    .filter(Boolean);
  const first = (w) => [...w][0] || '';
  const s = words.length > 1 ? first(words[0]) + first(words[1]) : [...(words[0] || '?')].slice(0, 2).join('');
  return s.toUpperCase();
}

/**
 * A round picture for `key` (a user or a group): the avatar media when
 * `avatarId` is set, else initials of `name` on a colour of the key.
 */
export function avatar(key, name, avatarId, cls) {
  const a = el('span', `avatar c${colourOf(key)}${cls ? ` ${cls}` : ''}`);
  a.append(el('span', 'initials', initials(name)));
  a.setAttribute('aria-hidden', 'true');
  if (avatarId && /^[0-9a-f]{32}$/.test(avatarId)) {
    const img = el('img');
    img.alt = '';
    img.addEventListener('load', () => a.classList.add('has-img'));
    loadInto(img, avatarId, AVATAR_THUMB);
    a.append(img);
  }
  return a;
}
