//! 5.5 media: the metadata of uploads, media named in a `send`'s content
//! or in a profile's avatar, and the sweep of media nothing refers to.
//! The bytes are the server's (`tern_core::media::Blobs`); the core keeps
//! the rules.

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::media::{is_media_id, media_url};
use crate::store::MediaRecord;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tern_proto::ErrorCode;

impl Core {
    /// Stores the metadata of a media whose blob is written.
    pub async fn media_add(&self, m: &MediaRecord) -> CoreResult<()> {
        Ok(self.store.media_add(m).await?)
    }

    /// The media of this id (any valid token may download it, 5.6b);
    /// `not_found` when there is none.
    pub async fn media(&self, id: &str) -> CoreResult<MediaRecord> {
        if !is_media_id(id) {
            return Err(no_media());
        }
        self.store.media_get(id).await?.ok_or_else(no_media)
    }

    /// Removes at most `max` media created before `created_before` that
    /// no message or profile refers to, and returns them: their blobs are
    /// then the caller's to delete.
    pub async fn media_sweep(&self, created_before: i64, max: u32) -> CoreResult<Vec<MediaRecord>> {
        Ok(self.store.media_sweep(created_before, max).await?)
    }

    /// A `send` of kind `image`, `voice` or `file` whose content names
    /// `"media"`: the media must be the sender's (`invalid` otherwise) and
    /// of the kind's type (`image/*` for `image`, `audio/*` for `voice`);
    /// it is marked referenced and the content gets `url`, `size`, `mime`
    /// (and `w`, `h` for images) from it. `None`: the content stays as
    /// sent.
    pub(super) async fn fill_media(
        &self,
        user: &str,
        kind: &str,
        content: &RawValue,
    ) -> CoreResult<Option<String>> {
        if !matches!(kind, "image" | "voice" | "file") || !content.get().contains("\"media\"") {
            return Ok(None);
        }
        let mut obj: Map<String, Value> = serde_json::from_str(content.get())
            .map_err(|_| CoreError::invalid("content must be a JSON object"))?;
        let Some(named) = obj.get("media") else {
            return Ok(None);
        };
        let Some(id) = named.as_str().filter(|s| is_media_id(s)) else {
            return Err(CoreError::invalid("media must be a media id"));
        };
        let m =
            self.store.media_reference(id, user).await?.ok_or_else(|| {
                CoreError::invalid(format!("no media {id} uploaded by the sender"))
            })?;
        let fits = match kind {
            "image" => m.mime.starts_with("image/"),
            "voice" => m.mime.starts_with("audio/"),
            _ => true,
        };
        if !fits {
            return Err(CoreError::invalid(format!(
                "media {id} is {}, not for a {kind} message",
                m.mime
            )));
        }
        obj.insert("url".into(), Value::String(media_url(id)));
        obj.insert("size".into(), Value::from(m.size));
        obj.insert("mime".into(), Value::String(m.mime.clone()));
        if kind == "image" {
            if let (Some(w), Some(h)) = (m.w, m.h) {
                obj.insert("w".into(), Value::from(w));
                obj.insert("h".into(), Value::from(h));
            }
        }
        Ok(Some(Value::Object(obj).to_string()))
    }

    /// 5.3: an avatar that names a media of the caller refers to it (it
    /// is kept); any other avatar id stays as it is (opaque).
    pub(super) async fn reference_avatar(&self, user: &str, avatar: &str) -> CoreResult<()> {
        if is_media_id(avatar) {
            self.store.media_reference(avatar, user).await?;
        }
        Ok(())
    }
}

fn no_media() -> CoreError {
    CoreError::new(ErrorCode::NotFound, "no such media")
}
