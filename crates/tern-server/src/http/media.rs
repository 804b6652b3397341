//! 5.5 media: `POST /v1/media` (the body streamed to the blob store,
//! hashed as it passes, never held whole) and `GET /v1/media/{media}`
//! (`ETag`, `If-None-Match`, one `Range`, `?thumb=N`), and the periodic
//! sweep of media nothing refers to. Who may use which media is the
//! core's (`tern_core::service::media`); the bytes are `App::blobs`'.

use super::{invalid, ApiError, ApiResult, Bearer, Param};
use crate::state::App;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tern_core::media::{
    media_url, new_media_id, read_all, thumb_variant, BlobError, BlobReader, ORIGINAL,
};
use tern_core::store::MediaRecord;
use tern_core::CoreError;
use tern_proto::wire::{ErrorBody, MediaUploaded};
use tern_proto::ErrorCode;
use utoipa::IntoParams;

/// How much of an upload's start is kept to check an image's format and
/// read its pixel size.
const HEAD_BYTES: usize = 256 * 1024;
/// Longest `?filename=`, in bytes.
const FILENAME_MAX: usize = 255;
/// After a 413, at most this much more of the body is read (and dropped)
/// so that the client, still sending, reads the answer rather than a
/// reset connection; a longer body is cut.
const DRAIN_BYTES: u64 = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of the body, up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`].
async fn drain<S>(stream: &mut S)
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut n = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.len() as u64;
            if n > DRAIN_BYTES {
                return;
            }
        }
    })
    .await;
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UploadParams {
    /// The file's name, kept with the media (at most 255 bytes, no
    /// control characters); a download that is not an image, audio or
    /// video names it in `Content-Disposition`.
    filename: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DownloadParams {
    /// A session token, for clients that cannot send `Authorization`
    /// (an `<img src>`); any valid token may download any media.
    token: Option<String>,
    /// For images: a JPEG thumbnail whose longest side is this (16-1024).
    thumb: Option<String>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "{what}");
    ApiError(CoreError::new(
        ErrorCode::Unavailable,
        "media storage is unavailable",
    ))
}

fn too_large(max: u64) -> ApiError {
    ApiError(CoreError::new(
        ErrorCode::ContentTooLarge,
        format!("the upload is over {max} bytes (media.max_bytes)"),
    ))
}

fn unsupported(msg: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError(CoreError::new(ErrorCode::UnsupportedMedia, msg))
}

/// The type of `Content-Type`, lowercase, without parameters.
fn essence(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let t = v.split(';').next()?.trim().to_ascii_lowercase();
    (!t.is_empty()).then_some(t)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[utoipa::path(
    post,
    path = "/v1/media",
    tag = "media",
    security(("bearer" = [])),
    params(UploadParams),
    request_body(content = Vec<u8>, description = "the bytes, with their `Content-Type`", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "stored; a `send` of kind image, voice or file may name `media`", body = MediaUploaded),
        (status = 400, description = "`invalid`: a bad `filename`, or a body that could not be read", body = ErrorBody),
        (status = 413, description = "`content_too_large`: over `media.max_bytes` (checked before the type), or an image declaring more than `media.image_max_side` pixels a side", body = ErrorBody),
        (status = 415, description = "`unsupported_media`: a type outside `media.allowed_types`, or bytes that are not the image type declared", body = ErrorBody),
    )
)]
pub(super) async fn upload_media(
    State(app): State<Arc<App>>,
    me: Bearer,
    q: Result<Query<UploadParams>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Query(p) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let cfg = &app.cfg.media;
    let max = cfg.max_bytes;
    let filename = p.filename.unwrap_or_default();
    if filename.len() > FILENAME_MAX || filename.chars().any(char::is_control) {
        return Err(invalid(
            "filename must be at most 255 bytes, without control characters",
        ));
    }
    // Size before type (5.6b): a declared length says it at once.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mime = essence(&headers).unwrap_or_default();
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > max) {
        drain(&mut stream).await;
        return Err(too_large(max));
    }
    if !cfg.allowed_types.contains(&mime) {
        // The size still comes first: read (and drop) up to the limit.
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| invalid(format!("cannot read the body: {e}")))?;
            total += chunk.len() as u64;
            if total > max {
                drain(&mut stream).await;
                return Err(too_large(max));
            }
        }
        return Err(unsupported(format!(
            "type {mime:?} is not allowed (media.allowed_types)"
        )));
    }
    let id = new_media_id();
    let mut w = app
        .blobs
        .put(&id, ORIGINAL)
        .await
        .map_err(|e| unavailable("starting a media upload", e))?;
    let mut hash = Sha256::new();
    let mut head: Vec<u8> = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                w.abort().await;
                return Err(invalid(format!("cannot read the body: {e}")));
            }
        };
        total += chunk.len() as u64;
        if total > max {
            w.abort().await;
            drain(&mut stream).await;
            return Err(too_large(max));
        }
        hash.update(&chunk);
        if head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if let Err(e) = w.write(chunk).await {
            w.abort().await;
            return Err(unavailable("writing a media upload", e));
        }
    }
    // Images: the bytes must be of the declared format; the size comes
    // from the header, and one past the decoding bound is refused here.
    let (mut width, mut height) = (None, None);
    if let Some(format) = tern_media::image::format_of_mime(&mime) {
        if tern_media::image::sniff(&head) != Some(format) {
            w.abort().await;
            return Err(unsupported(format!("the bytes are not {mime}")));
        }
        if let Some((iw, ih)) = tern_media::image::dimensions(&head, format) {
            if iw.max(ih) > cfg.image_max_side {
                w.abort().await;
                return Err(ApiError(CoreError::new(
                    ErrorCode::ContentTooLarge,
                    format!(
                        "the image is {iw}x{ih} pixels; at most {} a side (media.image_max_side)",
                        cfg.image_max_side
                    ),
                )));
            }
            (width, height) = (Some(iw), Some(ih));
        }
    }
    w.finish()
        .await
        .map_err(|e| unavailable("finishing a media upload", e))?;
    let rec = MediaRecord {
        id: id.clone(),
        owner: me.0.clone(),
        size: total,
        mime,
        sha256: hex(&hash.finalize()),
        w: width,
        h: height,
        filename,
        created_at: tern_core::now_ms(),
        referenced: false,
    };
    if let Err(e) = app.core.media_add(&rec).await {
        let _ = app.blobs.delete(&id).await;
        return Err(e.into());
    }
    let answer = MediaUploaded {
        url: media_url(&id),
        media: id,
        size: rec.size,
        mime: rec.mime,
        sha256: rec.sha256,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// One `Range: bytes=` range of a `size`-byte body: `Ok(None)` for none
/// (or a form served whole: several ranges, another unit), `Err` for one
/// that starts past the end.
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last b bytes.
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 {
            return Err(());
        }
        size.saturating_sub(n)..size
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            size
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.saturating_add(1).min(size),
                _ => return Ok(None),
            }
        };
        start..end
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

fn stream_body(reader: Box<dyn BlobReader>) -> Body {
    let s = futures_util::stream::unfold(reader, |mut r| async move {
        match r.next().await {
            Ok(Some(chunk)) => Some((Ok::<_, BlobError>(chunk), r)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "reading a media blob");
                Some((Err(e), r))
            }
        }
    });
    Body::from_stream(s)
}

#[utoipa::path(
    get,
    path = "/v1/media/{media}",
    tag = "media",
    security(("bearer" = [])),
    params(("media" = String, Path, description = "the media id"), DownloadParams),
    responses(
        (status = 200, description = "the bytes, with `Content-Type`, `ETag` (the SHA-256) and `Accept-Ranges: bytes`", content_type = "application/octet-stream"),
        (status = 206, description = "the `Range` asked for, with `Content-Range`"),
        (status = 304, description = "`If-None-Match` names the `ETag`"),
        (status = 400, description = "`invalid`: `thumb` outside 16-1024, or for media that is not an image", body = ErrorBody),
        (status = 404, description = "`not_found`: no such media", body = ErrorBody),
        (status = 413, description = "`content_too_large`: the image is over the decoding bounds for a thumbnail", body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the range starts past the end", body = ErrorBody),
    )
)]
pub(super) async fn get_media(
    State(app): State<Arc<App>>,
    Param(id): Param<String>,
    q: Result<Query<DownloadParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Query(p) = q.map_err(|e| invalid(format!("bad query parameters: {}", e.body_text())))?;
    let token = match super::bearer_token(&headers) {
        Ok(t) => t.to_owned(),
        Err(e) => p.token.clone().ok_or(e)?,
    };
    app.core.session(&token).await?;
    let m = app.core.media(&id).await?;
    let (variant, size, mime, etag) = match p.thumb.as_deref() {
        None => (
            ORIGINAL.to_owned(),
            m.size,
            m.mime.clone(),
            m.sha256.clone(),
        ),
        Some(t) => {
            let n = t
                .parse::<u32>()
                .ok()
                .filter(|n| (16..=1024).contains(n))
                .ok_or_else(|| invalid("thumb must be 16-1024"))?;
            let size = thumbnail(&app, &m, n).await?;
            (
                thumb_variant(n),
                size,
                "image/jpeg".to_owned(),
                format!("{}-t{n}", m.sha256),
            )
        }
    };
    let etag = format!("\"{etag}\"");
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| unavailable("etag", e))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag_value);
        return Ok(r);
    }
    let range = match parse_range(&headers, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = ApiError(CoreError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the range starts past the end ({size} bytes)"),
            ))
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let reader = match app.blobs.get(&m.id, &variant, range.clone()).await {
        Ok(r) => r,
        Err(BlobError::NotFound) => {
            return Err(ApiError(CoreError::new(
                ErrorCode::NotFound,
                "no such media",
            )))
        }
        Err(e) => return Err(unavailable("reading a media blob", e)),
    };
    let mut r = stream_body(reader).into_response();
    let h = r.headers_mut();
    let put = |h: &mut HeaderMap, k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put(h, header::CONTENT_TYPE, mime.clone());
    h.insert(header::ETAG, etag_value);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| mime.starts_with(p));
    if !inline {
        let name: String = m
            .filename
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .filter(|c| *c != '"' && *c != '\\')
            .collect();
        let v = if name.is_empty() {
            "attachment".to_owned()
        } else {
            format!("attachment; filename=\"{name}\"")
        };
        put(h, header::CONTENT_DISPOSITION, v);
    }
    match range {
        Some(rg) => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            put(
                h,
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", rg.start, rg.end - 1),
            );
            put(h, header::CONTENT_LENGTH, (rg.end - rg.start).to_string());
        }
        None => put(r.headers_mut(), header::CONTENT_LENGTH, size.to_string()),
    }
    Ok(r)
}

/// The size of media `m`'s thumbnail of side `n`, made (and kept as a
/// blob) the first time it is asked for.
async fn thumbnail(app: &Arc<App>, m: &MediaRecord, n: u32) -> ApiResult<u64> {
    let Some(format) = tern_media::image::format_of_mime(&m.mime) else {
        return Err(invalid("thumb is for images (png, jpeg, gif, webp)"));
    };
    let variant = thumb_variant(n);
    if let Some(size) = app
        .blobs
        .head(&m.id, &variant)
        .await
        .map_err(|e| unavailable("looking for a thumbnail", e))?
    {
        return Ok(size);
    }
    // At most `media.thumb_concurrency` decodes at once on this node.
    let _permit = app
        .thumbs
        .acquire()
        .await
        .map_err(|e| unavailable("thumbnail permits", e))?;
    let mut r = match app.blobs.get(&m.id, ORIGINAL, None).await {
        Ok(r) => r,
        Err(BlobError::NotFound) => {
            return Err(ApiError(CoreError::new(
                ErrorCode::NotFound,
                "no such media",
            )))
        }
        Err(e) => return Err(unavailable("reading a media blob", e)),
    };
    let bytes = read_all(&mut *r)
        .await
        .map_err(|e| unavailable("reading a media blob", e))?;
    let (side, alloc) = (app.cfg.media.image_max_side, app.cfg.media.thumb_max_alloc);
    let made = tokio::task::spawn_blocking(move || {
        tern_media::image::thumbnail(&bytes, format, n, side, alloc)
    })
    .await
    .map_err(|e| unavailable("making a thumbnail", e))?;
    let jpeg = match made {
        Ok(j) => j,
        Err(tern_media::image::ThumbError::TooLarge(why)) => {
            return Err(ApiError(CoreError::new(
                ErrorCode::ContentTooLarge,
                format!("the image is over the decoding bounds: {why}"),
            )))
        }
        Err(tern_media::image::ThumbError::Bad(why)) => {
            return Err(unsupported(format!("the image cannot be decoded: {why}")))
        }
    };
    let size = jpeg.len() as u64;
    let mut w = app
        .blobs
        .put(&m.id, &variant)
        .await
        .map_err(|e| unavailable("storing a thumbnail", e))?;
    if let Err(e) = w.write(jpeg.into()).await {
        w.abort().await;
        return Err(unavailable("storing a thumbnail", e));
    }
    w.finish()
        .await
        .map_err(|e| unavailable("storing a thumbnail", e))?;
    Ok(size)
}

/// The node's sweep: every `media.sweep_secs`, media nothing refers to,
/// uploaded over `media.grace_secs` ago, leave the store (one transaction
/// per batch of `media.sweep_batch`) and then their blobs. Ends when the
/// node stops.
pub(crate) async fn sweep(app: Arc<App>) {
    let mut stopping = app.stopping.clone();
    let every = Duration::from_secs(app.cfg.media.sweep_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
        if *stopping.borrow() {
            return;
        }
        sweep_once(&app).await;
    }
}

async fn sweep_once(app: &App) {
    let grace_ms = (app.cfg.media.grace_secs * 1000) as i64;
    let batch = app.cfg.media.sweep_batch;
    loop {
        let cutoff = tern_core::now_ms() - grace_ms;
        let gone = match app.core.media_sweep(cutoff, batch).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e.message, "media sweep failed");
                return;
            }
        };
        for m in &gone {
            if let Err(e) = app.blobs.delete(&m.id).await {
                tracing::warn!(error = %e, media = %m.id, "deleting a swept media's blobs");
            }
        }
        if !gone.is_empty() {
            tracing::debug!(removed = gone.len(), "media swept");
        }
        if (gone.len() as u32) < batch {
            return;
        }
    }
}
