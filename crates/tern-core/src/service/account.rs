//! 5.6 account data: the export of everything a user can read (`GET
//! /v1/users/me/export`), as JSON documents the server packs into a zip.

use super::{Core, HISTORY_MAX};
use crate::error::{CoreError, CoreResult};
use crate::frame::msg_view;
use crate::store::HistoryQuery;
use serde_json::{json, Value};
use tern_proto::ErrorCode;

/// Most conversations an export walks through.
pub const EXPORT_CONVS_MAX: u32 = 100_000;

/// One user's data: named JSON documents.
#[derive(Debug)]
pub struct Export {
    /// `(file name, document)`, in the order they are to be written.
    pub files: Vec<(String, Value)>,
    /// Whether `max_messages` cut the messages short.
    pub truncated: bool,
}

impl Core {
    /// The user's profile, friends (and blocks), groups, and every
    /// conversation the user can read with its messages as history shows
    /// them to the user, at most `max_messages` messages in all (the
    /// oldest of each conversation first; beyond the bound `truncated`).
    pub async fn export(&self, user: &str, max_messages: usize) -> CoreResult<Export> {
        let rec = self.store.get_user(user).await?.ok_or_else(|| {
            CoreError::new(ErrorCode::NoSuchUser, format!("no such user {user:?}"))
        })?;
        let profile = self.store.profile(user).await?;
        let friends = self.store.friends(user).await?;
        let blocks = self.store.blocks(user).await?;
        let list = self.store.conversations(user, 0, EXPORT_CONVS_MAX).await?;
        let mut files = vec![
            (
                "profile.json".to_owned(),
                json!({
                    "user": rec.user,
                    "name": profile.as_ref().map_or(rec.name.as_str(), |p| p.name.as_str()),
                    "avatar": profile.as_ref().and_then(|p| p.avatar.clone()),
                    "created_at": rec.created_at,
                }),
            ),
            (
                "friends.json".to_owned(),
                json!({
                    "friends": friends.friends,
                    "incoming": friends.incoming,
                    "outgoing": friends.outgoing,
                    "blocked": blocks.blocked,
                }),
            ),
        ];
        let mut groups = Vec::new();
        for c in list.convs.iter().filter_map(|c| c.group.as_deref()) {
            if let Some(g) = self.store.get_group(c).await? {
                groups.push(json!({
                    "group": g.gid,
                    "name": g.name,
                    "owner": g.owner,
                    "admins": g.admins,
                    "members": g.members,
                    "member": g.members.iter().any(|m| m == user),
                    "created_at": g.created_at,
                }));
            }
        }
        files.push(("groups.json".to_owned(), json!({ "groups": groups })));
        let mut left = max_messages;
        let mut truncated = false;
        let mut index = Vec::new();
        // Oldest conversations first, so a cut keeps whole early ones.
        for c in list.convs.iter().rev() {
            let mut msgs: Vec<Value> = Vec::new();
            let mut after = 0u64;
            while left > 0 {
                let limit = (left.min(HISTORY_MAX as usize)) as u32;
                let mut page = self
                    .store
                    .history(
                        user,
                        &c.conv,
                        HistoryQuery {
                            before_seq: None,
                            after_seq: Some(after),
                            limit,
                        },
                    )
                    .await?;
                self.attach_reactions(&c.conv, &mut page).await?;
                let n = page.len();
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                left -= n;
                msgs.extend(
                    page.iter()
                        .map(|m| serde_json::to_value(msg_view(m)).unwrap_or(Value::Null)),
                );
                if n < limit as usize {
                    break;
                }
            }
            if left == 0 && after < c.max_seq {
                truncated = true;
            }
            let name = format!("conversations/{}.json", c.conv.replace(':', "_"));
            index.push(json!({"conv": c.conv, "file": name, "messages": msgs.len()}));
            files.push((
                name,
                json!({
                    "conv": c.conv,
                    "peer": c.peer,
                    "group": c.group,
                    "max_seq": c.max_seq,
                    "read_seq": c.read_seq,
                    "messages": msgs,
                }),
            ));
        }
        files.insert(
            0,
            (
                "export.json".to_owned(),
                json!({
                    "user": user,
                    "exported_at": crate::now_ms(),
                    "max_messages": max_messages,
                    "truncated": truncated,
                    "conversations": index,
                }),
            ),
        );
        Ok(Export { files, truncated })
    }
}
