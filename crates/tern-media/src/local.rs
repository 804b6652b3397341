//! Media blobs as files: `<root>/<media>/<variant>`. A blob is written to
//! a temporary file beside it, fsync'd, then renamed into place (and the
//! directory fsync'd): a reader sees the whole blob or none.

use async_trait::async_trait;
use bytes::Bytes;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tern_core::media::{BlobError, BlobReader, BlobResult, BlobWriter, Blobs};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// How much one read of a file returns.
const CHUNK: usize = 64 * 1024;

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Blobs under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<LocalBlobs> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalBlobs { root })
    }

    fn dir(&self, media: &str) -> BlobResult<PathBuf> {
        // Names come from the server (hex ids, fixed variants); anything
        // else is refused rather than joined into a path.
        if media.is_empty() || !media.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.root.join(media))
    }

    fn path(&self, media: &str, variant: &str) -> BlobResult<PathBuf> {
        if variant.is_empty() || !variant.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BlobError::NotFound);
        }
        Ok(self.dir(media)?.join(variant))
    }
}

fn io(e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::backend(e)
    }
}

struct FileWriter {
    file: tokio::fs::File,
    tmp: PathBuf,
    dest: PathBuf,
    /// Renamed into place: nothing to clean up.
    done: bool,
}

impl Drop for FileWriter {
    /// A writer dropped unfinished (its request timed out or was cut)
    /// leaves nothing behind.
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
            if let Some(dir) = self.dest.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[async_trait]
impl BlobWriter for FileWriter {
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()> {
        self.file.write_all(&chunk).await.map_err(io)
    }

    async fn finish(mut self: Box<Self>) -> BlobResult<()> {
        self.file.flush().await.map_err(io)?;
        self.file.sync_all().await.map_err(io)?;
        tokio::fs::rename(&self.tmp, &self.dest).await.map_err(io)?;
        if let Some(dir) = self.dest.parent() {
            sync_dir(dir).await;
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        self.done = true;
        let _ = tokio::fs::remove_file(&self.tmp).await;
        // The media's directory, if this was all it held.
        if let Some(dir) = self.dest.parent() {
            let _ = tokio::fs::remove_dir(dir).await;
        }
    }
}

async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

struct FileReader {
    file: tokio::fs::File,
    left: u64,
}

#[async_trait]
impl BlobReader for FileReader {
    async fn next(&mut self) -> BlobResult<Option<Bytes>> {
        if self.left == 0 {
            return Ok(None);
        }
        let want = (self.left as usize).min(CHUNK);
        let mut buf = vec![0u8; want];
        let n = self.file.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        self.left -= n as u64;
        Ok(Some(Bytes::from(buf)))
    }
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn put(&self, media: &str, variant: &str) -> BlobResult<Box<dyn BlobWriter>> {
        let dest = self.path(media, variant)?;
        let dir = self.dir(media)?;
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let tmp = dir.join(format!(".{variant}.{:016x}.tmp", rand::random::<u64>()));
        let file = tokio::fs::File::create(&tmp).await.map_err(io)?;
        Ok(Box::new(FileWriter {
            file,
            tmp,
            dest,
            done: false,
        }))
    }

    async fn get(
        &self,
        media: &str,
        variant: &str,
        range: Option<Range<u64>>,
    ) -> BlobResult<Box<dyn BlobReader>> {
        let mut file = tokio::fs::File::open(self.path(media, variant)?)
            .await
            .map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        let left = match range {
            Some(r) => {
                file.seek(SeekFrom::Start(r.start)).await.map_err(io)?;
                r.end.min(size).saturating_sub(r.start)
            }
            None => size,
        };
        Ok(Box::new(FileReader { file, left }))
    }

    async fn head(&self, media: &str, variant: &str) -> BlobResult<Option<u64>> {
        match tokio::fs::metadata(self.path(media, variant)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BlobError::backend(e)),
        }
    }

    async fn delete(&self, media: &str) -> BlobResult<()> {
        match tokio::fs::remove_dir_all(self.dir(media)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::backend(e)),
        }
    }
}
