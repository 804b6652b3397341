//! 5.5 media: the seam to blob storage ([`Blobs`]) and the rules for media
//! ids. The metadata lives in the [`Store`](crate::store::Store)
//! (`media_*`); the bytes behind this trait, local files on one node or an
//! object store in a cluster (named only in `tern-server/src/backends.rs`).
//!
//! A media's blobs are named by the media id and a variant: [`ORIGINAL`]
//! for the uploaded bytes, [`thumb_variant`] for each thumbnail size made.

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;

/// The variant that holds the uploaded bytes.
pub const ORIGINAL: &str = "orig";

/// The variant of the thumbnail whose longest side is `n` pixels.
pub fn thumb_variant(n: u32) -> String {
    format!("t{n}")
}

/// A new media id: 128 random bits as 32 lowercase hex digits.
pub fn new_media_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `s` has the form of a media id (32 lowercase hex digits): what
/// the server looks up; anything else is no media.
pub fn is_media_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path a media is served at (5.5), filled into a message as `url`.
pub fn media_url(id: &str) -> String {
    format!("/v1/media/{id}")
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such blob")]
    NotFound,
    #[error("blob backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BlobError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> BlobError {
        BlobError::Backend(Box::new(e))
    }
}

pub type BlobResult<T> = Result<T, BlobError>;

/// A blob being written, chunk by chunk; nothing is visible under its
/// name before [`finish`](BlobWriter::finish).
#[async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()>;
    /// Makes the blob durable and visible under its name.
    async fn finish(self: Box<Self>) -> BlobResult<()>;
    /// Drops what was written.
    async fn abort(self: Box<Self>);
}

/// A blob (or a range of it) being read, chunk by chunk.
#[async_trait]
pub trait BlobReader: Send {
    /// The next chunk; `None` at the end.
    async fn next(&mut self) -> BlobResult<Option<Bytes>>;
}

/// Where media bytes are kept.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// Starts writing variant `variant` of media `media` (replacing it
    /// when it exists, once finished).
    async fn put(&self, media: &str, variant: &str) -> BlobResult<Box<dyn BlobWriter>>;
    /// Reads the variant, or bytes `range` of it (within its size).
    async fn get(
        &self,
        media: &str,
        variant: &str,
        range: Option<Range<u64>>,
    ) -> BlobResult<Box<dyn BlobReader>>;
    /// The variant's size, if it exists.
    async fn head(&self, media: &str, variant: &str) -> BlobResult<Option<u64>>;
    /// Deletes every variant of the media; nothing if there is none.
    async fn delete(&self, media: &str) -> BlobResult<()>;
}

/// Reads a whole blob into memory (thumbnails: the original image, at
/// most `media.max_bytes`).
pub async fn read_all(r: &mut dyn BlobReader) -> BlobResult<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = r.next().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
