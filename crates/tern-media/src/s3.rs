//! Media blobs in an S3-compatible object store: `media/<media>/<variant>`
//! in one bucket. Uploads go up as they arrive (multipart once past the
//! first part); reads ask the store for the range.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use std::ops::Range;
use std::sync::Arc;
use tern_core::media::{BlobError, BlobReader, BlobResult, BlobWriter, Blobs};
use tokio::io::AsyncWriteExt;

/// Where the bucket is (5.7 `media.s3_*`).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// `""`: AWS itself; else the store's URL (`http://` allowed).
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
}

impl S3Blobs {
    pub fn new(o: &S3Options) -> Result<S3Blobs, object_store::Error> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&o.bucket)
            .with_region(if o.region.is_empty() {
                "us-east-1"
            } else {
                &o.region
            })
            .with_access_key_id(&o.access_key)
            .with_secret_access_key(&o.secret_key);
        if !o.endpoint.is_empty() {
            b = b
                .with_endpoint(&o.endpoint)
                .with_allow_http(o.endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        Ok(S3Blobs {
            store: Arc::new(b.build()?),
        })
    }
}

fn path(media: &str, variant: &str) -> Path {
    Path::from(format!("media/{media}/{variant}"))
}

fn os(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => BlobError::backend(e),
    }
}

/// Bytes gathered before a part goes up: S3's smallest part (every part
/// but the last must be at least 5 MiB). A file no larger goes up as one
/// plain PUT.
const PART_BYTES: usize = 5 << 20;

/// Parts uploading at once per upload. While that many are in flight the
/// writer stops taking bytes, and so the request body stops being read:
/// an upload holds at most about (1 + this) x [`PART_BYTES`] however slow
/// the store is (the defaults, 10 MiB parts and 8 in flight, let a fast
/// client park 90 MiB per upload in the node).
const PARTS_IN_FLIGHT: usize = 2;

struct S3Writer {
    w: BufWriter,
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()> {
        self.w.write_all(&chunk).await.map_err(BlobError::backend)
    }

    async fn finish(mut self: Box<Self>) -> BlobResult<()> {
        self.w.shutdown().await.map_err(BlobError::backend)
    }

    async fn abort(mut self: Box<Self>) {
        if let Err(e) = self.w.abort().await {
            tracing::warn!(error = %e, "aborting a media upload to S3");
        }
    }
}

struct S3Reader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
}

#[async_trait]
impl BlobReader for S3Reader {
    async fn next(&mut self) -> BlobResult<Option<Bytes>> {
        self.stream.next().await.transpose().map_err(os)
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, media: &str, variant: &str) -> BlobResult<Box<dyn BlobWriter>> {
        Ok(Box::new(S3Writer {
            w: BufWriter::with_capacity(self.store.clone(), path(media, variant), PART_BYTES)
                .with_max_concurrency(PARTS_IN_FLIGHT),
        }))
    }

    async fn get(
        &self,
        media: &str,
        variant: &str,
        range: Option<Range<u64>>,
    ) -> BlobResult<Box<dyn BlobReader>> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path(media, variant), opts)
            .await
            .map_err(os)?;
        Ok(Box::new(S3Reader {
            stream: got.into_stream(),
        }))
    }

    async fn head(&self, media: &str, variant: &str) -> BlobResult<Option<u64>> {
        match self.store.head(&path(media, variant)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BlobError::backend(e)),
        }
    }

    async fn delete(&self, media: &str) -> BlobResult<()> {
        let prefix = Path::from(format!("media/{media}"));
        let found: Vec<_> = self.store.list(Some(&prefix)).collect().await;
        for meta in found {
            let meta = meta.map_err(os)?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BlobError::backend(e)),
            }
        }
        Ok(())
    }
}
