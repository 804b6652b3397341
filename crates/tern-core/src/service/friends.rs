//! Friends: requests, removal and the lists with presence.

use super::Core;
use crate::error::{CoreError, CoreResult};
use crate::frame::encode;
use crate::now_ms;
use crate::push::{Outbound, Push};
use crate::store::{FriendLists, FriendStatus};
use std::borrow::Cow;
use tern_proto::wire::{tag, FriendPush};
use tern_proto::ErrorCode;

impl Core {
    pub async fn friend_request(&self, user: &str, other: &str) -> CoreResult<FriendStatus> {
        if user == other {
            return Err(CoreError::invalid("cannot befriend oneself"));
        }
        self.require_user(other).await?;
        self.check_not_blocked(other, user).await?;
        self.check_outgoing_cap(user, other).await?;
        let status = self.store.friend_request(user, other, now_ms()).await?;
        let (theirs, mine) = match status {
            FriendStatus::Requested => ("incoming", "outgoing"),
            FriendStatus::Friends => ("friends", "friends"),
        };
        self.push_friend(other, user, theirs);
        self.push_friend(user, other, mine);
        Ok(status)
    }

    /// Refuses a request that would leave `user` with more unanswered
    /// requests than the cap. Accepting `other`'s request, or asking again,
    /// adds none, so it passes. The lists are read only at the cap.
    async fn check_outgoing_cap(&self, user: &str, other: &str) -> CoreResult<()> {
        let cap = self.cfg.max_outgoing_requests as u64;
        if self.store.outgoing_request_count(user).await? < cap {
            return Ok(());
        }
        let l = self.store.friends(user).await?;
        let known = |v: &[String]| v.iter().any(|u| u == other);
        if known(&l.incoming) || known(&l.outgoing) || known(&l.friends) {
            return Ok(());
        }
        Err(CoreError::new(
            ErrorCode::Forbidden,
            format!(
                "{cap} friend requests are unanswered, the most one user may have \
                 (rate.friend_requests_outstanding)"
            ),
        ))
    }

    pub async fn friend_delete(&self, user: &str, other: &str) -> CoreResult<()> {
        self.require_user(other).await?;
        self.store.friend_delete(user, other).await?;
        self.push_friend(other, user, "removed");
        self.push_friend(user, other, "removed");
        Ok(())
    }

    /// Tells `to`'s online devices how `about` now stands with them.
    fn push_friend(&self, to: &str, about: &str, status: &str) {
        let frame = encode(&FriendPush {
            ty: tag::Friend,
            user: Cow::Borrowed(about),
            status: Cow::Borrowed(status),
        });
        self.fanout.push(Push {
            users: vec![to.into()],
            except: None,
            out: Outbound::Frame(frame),
            inactive: None,
        });
    }

    /// The lists, with each friend's presence.
    pub async fn friends(&self, user: &str) -> CoreResult<(Vec<(String, bool)>, FriendLists)> {
        let lists = self.store.friends(user).await?;
        let names: Vec<&str> = lists.friends.iter().map(String::as_str).collect();
        let online = self.online(&names).await;
        let hidden = self.hidden_presence(user, &names).await?;
        let online = online.into_iter().zip(hidden).map(|(on, h)| on && !h);
        let friends = lists.friends.iter().cloned().zip(online).collect();
        Ok((friends, lists))
    }
}
