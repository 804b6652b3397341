//! 5.5 media: the blob backends behind `tern_core::media::Blobs` (local
//! files under the data directory for one node, any S3-compatible object
//! store for a cluster), and what the server reads from images (their
//! format and size, thumbnails), always within limits.

pub mod image;
mod local;
mod s3;

pub use local::LocalBlobs;
pub use s3::{S3Blobs, S3Options};
