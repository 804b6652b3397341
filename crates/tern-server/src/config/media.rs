//! `[media]` (5.5, 5.7): uploads, their types, the sweep of unreferenced
//! media, image decoding bounds, and the S3-compatible store of a cluster.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest upload, in bytes (over it: 413 `content_too_large`).
    pub max_bytes: u64,
    /// MIME types an upload may declare (else 415 `unsupported_media`).
    pub allowed_types: Vec<String>,
    /// Media nothing refers to are removed this long after their upload.
    pub grace_secs: u64,
    /// How often a node looks for such media.
    pub sweep_secs: u64,
    /// Most media one sweep removes (the next takes the rest).
    pub sweep_batch: u32,
    /// Largest image side, in pixels, an upload may declare and a
    /// thumbnail decode (a larger one: 413 `content_too_large`).
    pub image_max_side: u32,
    /// Most memory one thumbnail's decode may take, in bytes.
    pub thumb_max_alloc: u64,
    /// Thumbnails a node makes at once (others wait).
    pub thumb_concurrency: usize,
    /// S3-compatible object store (any mode; a cluster needs it for its
    /// nodes to share media). Empty: files under `data_dir/media`.
    pub s3_bucket: String,
    /// The store's URL; empty for AWS itself.
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
}

/// The default `allowed_types`: common images, audio for voice notes,
/// video, PDF, zip, plain text and any file as `application/octet-stream`.
pub const DEFAULT_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/webm",
    "audio/wav",
    "video/mp4",
    "video/webm",
    "video/quicktime",
    "application/pdf",
    "application/zip",
    "text/plain",
    "application/octet-stream",
];

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_bytes: 25 * 1024 * 1024,
            allowed_types: DEFAULT_TYPES.iter().map(|s| (*s).to_owned()).collect(),
            grace_secs: 24 * 3600,
            sweep_secs: 600,
            sweep_batch: 500,
            image_max_side: 16384,
            thumb_max_alloc: 256 * 1024 * 1024,
            thumb_concurrency: 2,
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key: String::new(),
            s3_secret_key: String::new(),
        }
    }
}

impl MediaConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.max_bytes == 0 {
            return Err("media.max_bytes must be > 0".into());
        }
        if self.allowed_types.is_empty() {
            return Err("media.allowed_types must name at least one type".into());
        }
        for t in &self.allowed_types {
            let ok = t.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && *t == t.to_ascii_lowercase() && !t.contains(';')
            });
            if !ok {
                return Err(format!(
                    "media.allowed_types: {t:?} is not a lowercase type/subtype"
                ));
            }
        }
        if self.grace_secs == 0 || self.sweep_secs == 0 || self.sweep_batch == 0 {
            return Err("media.grace_secs, sweep_secs and sweep_batch must be > 0".into());
        }
        if !(16..=65535).contains(&self.image_max_side) {
            return Err("media.image_max_side must be 16-65535".into());
        }
        if !(1..=64).contains(&self.thumb_concurrency) {
            return Err("media.thumb_concurrency must be 1-64".into());
        }
        if self.thumb_max_alloc < 1024 * 1024 {
            return Err("media.thumb_max_alloc must be at least 1048576".into());
        }
        Ok(())
    }
}
