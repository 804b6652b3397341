//! [`Client`]: the HTTP API (PROTOCOL.md 3) and the entry to a WebSocket
//! [`Session`](crate::Session).

use crate::config::{backoff, ClientConfig};
use crate::error::{http_error, Error, Result};
use crate::session::{Events, Session};
use crate::OutMessage;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::request::{self, Request};
use tern_proto::wire::{
    ConvSettingsAnswer, FriendAnswer, FriendsList, GroupAnswer, HistoryAnswer, ScheduledAnswer,
    ScheduledList, SearchAnswer, SendAnswer, SessionToken, SessionsList, SyncAnswer, UserCreated,
    UserInfo,
};

/// A connection to one Tern server: its HTTP API, with or without a token,
/// and [`Client::connect`] for a WebSocket session. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> tern_client::Result<()> {
/// use tern_client::Client;
/// let client = Client::new("http://127.0.0.1:8080")?;
/// client.register("alice", "password1", None).await?;
/// let alice = client.login("alice", "password1").await?;
/// let sent = alice.send_http(tern_client::OutMessage::text_to("bob", "hi")).await?;
/// println!("stored as seq {} of {}", sent.seq, sent.conv);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    token: Option<Arc<str>>,
    user: Option<Arc<str>>,
}

struct Inner {
    base: String,
    http: reqwest::Client,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `Retry-After` of an answer, in whole seconds.
fn retry_after(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Client {
    /// A client for the server at `base_url` (`http://host:port` or
    /// `https://...`), with default [`ClientConfig`].
    pub fn new(base_url: &str) -> Result<Client> {
        Client::with_config(base_url, ClientConfig::default())
    }

    pub fn with_config(base_url: &str, config: ClientConfig) -> Result<Client> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "server URL must start with http:// or https://: {base_url:?}"
            )));
        }
        let mut b = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .local_address(config.local_address);
        if let Some(tls) = &config.tls {
            b = b.use_preconfigured_tls((**tls).clone());
        }
        let http = b.build()?;
        Ok(Client {
            inner: Arc::new(Inner { base, http, config }),
            token: None,
            user: None,
        })
    }

    /// This client with a token (from [`Client::login`] or `tern token`).
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            inner: self.inner.clone(),
            token: Some(token.into()),
            user: self.user.clone(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The server's base URL, as given.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The token, if this client has one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The user that logged in through this client, if known.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The WebSocket endpoint: `ws://` or `wss://` `.../v1/ws`.
    pub fn ws_url(&self) -> String {
        let base = &self.inner.base;
        let rest = base
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
            .unwrap_or_else(|| base.clone());
        format!("{rest}/v1/ws")
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let token = self.token.as_deref().ok_or(Error::NoToken)?;
        Ok(self.request_anon(method, path).bearer_auth(token))
    }

    fn request_anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.inner
            .http
            .request(method, format!("{}{}", self.inner.base, path))
    }

    /// The HTTP call that carries `req` (PROTOCOL.md 3), with this
    /// client's token.
    fn request_for(&self, req: &Request<'_>) -> Result<RequestBuilder> {
        let call = req
            .http()
            .ok_or_else(|| Error::Invalid("no HTTP route carries this request".into()))?;
        let method = Method::from_bytes(call.method.as_bytes())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let mut b = self.request(method, &call.path)?;
        if !call.query.is_empty() {
            b = b.query(&call.query);
        }
        if let Some(body) = call.body {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        Ok(b)
    }

    /// Sends and decodes a JSON answer (or the error body).
    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let r = self.answer(req).await?;
        r.json::<T>().await.map_err(Error::Http)
    }

    /// Sends; an answer that is no success becomes [`Error::Server`].
    async fn answer(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let r = req.send().await?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let retry = retry_after(&r);
        let text = r.text().await.unwrap_or_default();
        Err(http_error(status, retry, &text))
    }

    /// `POST /v1/users`: creates an account (password at least 8 chars).
    pub async fn register(&self, user: &str, password: &str, name: Option<&str>) -> Result<()> {
        let mut body = json!({"user": user, "password": password});
        if let Some(n) = name {
            body["name"] = json!(n);
        }
        let _: UserCreated = self
            .call(self.request_anon(Method::POST, "/v1/users").json(&body))
            .await?;
        Ok(())
    }

    /// `POST /v1/sessions`: a client carrying the new token.
    pub async fn login(&self, user: &str, password: &str) -> Result<Client> {
        let body = json!({"user": user, "password": password});
        let t: SessionToken = self
            .call(self.request_anon(Method::POST, "/v1/sessions").json(&body))
            .await?;
        let mut c = self.with_token(&t.token);
        c.user = Some(user.into());
        Ok(c)
    }

    /// `DELETE /v1/sessions`: revokes this client's token everywhere (its
    /// sessions close).
    pub async fn logout(&self) -> Result<()> {
        let token = self.token.as_deref().ok_or(Error::NoToken)?;
        let req = Request::SessionEnd(request::SessionEnd {
            token: Cow::Borrowed(token),
        });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `GET /v1/users/{user}`.
    pub async fn user_info(&self, user: &str) -> Result<UserInfo<'static>> {
        let req = Request::UserGet(request::UserGet { user: user.into() });
        self.call(self.request_for(&req)?).await
    }

    /// `PUT /v1/friends/{user}`: asks, or accepts an incoming request.
    pub async fn add_friend(&self, user: &str) -> Result<FriendAnswer> {
        let req = Request::FriendAdd(request::FriendAdd { user: user.into() });
        self.call(self.request_for(&req)?).await
    }

    /// `DELETE /v1/friends/{user}`.
    pub async fn remove_friend(&self, user: &str) -> Result<()> {
        let req = Request::FriendDelete(request::FriendDelete { user: user.into() });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `GET /v1/friends`.
    pub async fn friends(&self) -> Result<FriendsList<'static>> {
        self.call(self.request_for(&Request::Friends)?).await
    }

    /// `POST /v1/groups`: the caller is the owner.
    pub async fn create_group(&self, name: &str, members: &[&str]) -> Result<GroupAnswer<'static>> {
        let req = Request::GroupCreate(request::GroupCreate {
            name: name.into(),
            members: members.iter().map(|&m| m.into()).collect(),
        });
        self.call(self.request_for(&req)?).await
    }

    /// `GET /v1/groups/{group}`.
    pub async fn group(&self, group: &str) -> Result<GroupAnswer<'static>> {
        let req = Request::GroupGet(request::GroupGet {
            group: group.into(),
        });
        self.call(self.request_for(&req)?).await
    }

    /// `POST /v1/groups/{group}/members`.
    pub async fn add_members(&self, group: &str, users: &[&str]) -> Result<GroupAnswer<'static>> {
        let req = Request::MembersAdd(request::MembersAdd {
            group: group.into(),
            users: users.iter().map(|&u| u.into()).collect(),
        });
        self.call(self.request_for(&req)?).await
    }

    /// `DELETE /v1/groups/{group}/members/{user}`: the owner removes
    /// anyone, admins plain members; anyone removes themself (leaves).
    pub async fn remove_member(&self, group: &str, user: &str) -> Result<()> {
        let req = Request::MemberRemove(request::MemberRemove {
            group: group.into(),
            user: user.into(),
        });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `GET /v1/conversations`: the same answer as `sync`.
    pub async fn conversations(&self) -> Result<SyncAnswer<'static>> {
        let req = Request::Sync(request::Sync::default());
        self.call(self.request_for(&req)?).await
    }

    /// `GET /v1/conversations/{conv}/messages`: the same answer as
    /// `history`.
    pub async fn messages(
        &self,
        conv: &str,
        before_seq: Option<u64>,
        after_seq: Option<u64>,
        limit: Option<u64>,
    ) -> Result<HistoryAnswer<'static>> {
        let req = Request::History(request::History {
            conv: conv.into(),
            before_seq,
            after_seq,
            limit,
        });
        self.call(self.request_for(&req)?).await
    }

    /// 5.2 `GET /v1/search`: the caller's messages holding every word of
    /// `q` (the last also as a prefix), newest first.
    pub async fn search(
        &self,
        q: &str,
        conv: Option<&str>,
        limit: Option<u64>,
        before_ts: Option<i64>,
    ) -> Result<SearchAnswer<'static>> {
        let req = Request::Search(request::Search {
            q: q.into(),
            conv: conv.map(Into::into),
            limit,
            before_ts,
        });
        self.call(self.request_for(&req)?).await
    }

    /// `POST /v1/messages`: stores a message; retried with the same
    /// `client_msg_id` on 429 (after `Retry-After`), 503 and transport
    /// errors, up to `send_attempts` times.
    pub async fn send_http(&self, msg: OutMessage) -> Result<SendAnswer<'static>> {
        let send = msg.request();
        let cfg = &self.inner.config;
        let mut attempt = 0;
        loop {
            let req = self.request_for(&send)?;
            match self.call::<SendAnswer<'static>>(req).await {
                Err(e) if e.is_transient() && attempt + 1 < cfg.send_attempts => {
                    let wait = match &e {
                        Error::Server {
                            retry_after: Some(s),
                            ..
                        } => std::time::Duration::from_secs(*s),
                        _ => backoff(cfg.retry_base, cfg.reconnect_max, attempt),
                    };
                    tracing::debug!(error = %e, ?wait, "retrying send");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Opens a WebSocket session as `device` (see [`Session`]). Fails if
    /// the server cannot be reached or refuses the token; once it is open,
    /// the session reconnects by itself.
    pub async fn connect(&self, device: &str) -> Result<(Session, Events)> {
        let token = self.token.as_deref().ok_or(Error::NoToken)?;
        Session::open(
            self.ws_url(),
            token.to_owned(),
            device.to_owned(),
            self.inner.config.clone(),
        )
        .await
    }
}

// 5.4 and blocks
impl Client {
    /// `PATCH /v1/groups/{group}`: owner or admins change the name, the
    /// announcement or `muted_all` (`None`: unchanged); the group after.
    pub async fn update_group(
        &self,
        group: &str,
        name: Option<&str>,
        announcement: Option<&str>,
        muted_all: Option<bool>,
    ) -> Result<GroupAnswer<'static>> {
        let req = Request::GroupUpdate(request::GroupUpdate {
            group: group.into(),
            name: name.map(Cow::Borrowed),
            announcement: announcement.map(Cow::Borrowed),
            muted_all,
        });
        self.call(self.request_for(&req)?).await
    }

    /// `DELETE /v1/groups/{group}`: the owner dissolves the group.
    pub async fn dissolve_group(&self, group: &str) -> Result<()> {
        let req = Request::GroupDissolve(request::GroupDissolve {
            group: group.into(),
        });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `PUT` (`on`) or `DELETE /v1/groups/{group}/admins/{user}`: the
    /// owner makes a member an admin, or a plain member again.
    pub async fn set_admin(&self, group: &str, user: &str, on: bool) -> Result<()> {
        let m = request::GroupMember {
            group: group.into(),
            user: user.into(),
        };
        let req = if on {
            Request::AdminAdd(m)
        } else {
            Request::AdminRemove(m)
        };
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `PUT /v1/groups/{group}/mutes/{user}` until `until` (ms), or
    /// `DELETE` it (`None`): owner or admins.
    pub async fn mute_member(&self, group: &str, user: &str, until: Option<i64>) -> Result<()> {
        let req = match until {
            Some(until) => Request::MuteAdd(request::MuteAdd {
                group: group.into(),
                user: user.into(),
                until,
            }),
            None => Request::MuteRemove(request::GroupMember {
                group: group.into(),
                user: user.into(),
            }),
        };
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `PUT` (`on`) or `DELETE /v1/blocks/{user}`.
    pub async fn block(&self, user: &str, on: bool) -> Result<()> {
        let b = request::Block { user: user.into() };
        let req = if on {
            Request::BlockAdd(b)
        } else {
            Request::BlockRemove(b)
        };
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `GET /v1/blocks`: whom this user blocked, sorted.
    pub async fn blocks(&self) -> Result<Vec<String>> {
        let list: tern_proto::wire::BlocksList<'static> =
            self.call(self.request_for(&Request::Blocks)?).await?;
        Ok(list.blocked.into_iter().map(Cow::into_owned).collect())
    }
}

// 5.3 profiles, conversation settings, sessions
impl Client {
    /// `PATCH /v1/users/me`: changes the display name and/or the avatar (a
    /// media id, `""` clears it; `None`: unchanged); the user view after.
    /// Friends' online devices and this user's get `profile`.
    pub async fn update_profile(
        &self,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> Result<UserInfo<'static>> {
        let req = Request::ProfileUpdate(request::ProfileUpdate {
            name: name.map(Cow::Borrowed),
            avatar: avatar.map(Cow::Borrowed),
        });
        self.call(self.request_for(&req)?).await
    }

    /// `PUT /v1/conversations/{conv}/settings`: mutes until `muted_until`
    /// (ms; 0 unmutes) and/or pins (`None`: unchanged); the settings
    /// after. This user's online devices get `conv_settings`.
    pub async fn set_conv_settings(
        &self,
        conv: &str,
        muted_until: Option<i64>,
        pinned: Option<bool>,
    ) -> Result<ConvSettingsAnswer> {
        let req = Request::ConvSettingsSet(request::ConvSettingsSet {
            conv: conv.into(),
            muted_until,
            pinned,
            retention_days: None,
        });
        self.call(self.request_for(&req)?).await
    }

    /// 5.6 `PUT /v1/conversations/{conv}/settings` with `retention_days`:
    /// the conversation's retention (shared by its members; 1:1 either
    /// party, groups the owner or an admin), 0 to clear it. Answers the
    /// caller's settings with it.
    pub async fn set_retention(&self, conv: &str, days: u32) -> Result<ConvSettingsAnswer> {
        let req = Request::ConvSettingsSet(request::ConvSettingsSet {
            conv: conv.into(),
            retention_days: Some(days),
            ..Default::default()
        });
        self.call(self.request_for(&req)?).await
    }

    /// `GET /v1/sessions`: this user's unexpired sessions, oldest first,
    /// each with its online devices; `current` marks this client's.
    pub async fn sessions(&self) -> Result<SessionsList<'static>> {
        self.call(self.request_for(&Request::Sessions)?).await
    }

    /// `DELETE /v1/sessions/{session}`: revokes one session everywhere
    /// (its sockets close with 4001); `not_found` for an unknown id.
    pub async fn revoke_session(&self, session: &str) -> Result<()> {
        let req = Request::SessionRevoke(request::SessionRevoke {
            session: session.into(),
        });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }

    /// `DELETE /v1/sessions?all=true`: revokes every session of this user,
    /// this client's included.
    pub async fn revoke_all_sessions(&self) -> Result<()> {
        self.answer(self.request_for(&Request::SessionsRevokeAll)?)
            .await?;
        Ok(())
    }

    // ----- 5.6 account erase -----

    /// `DELETE /v1/users/me`: erases this account (every token revoked,
    /// this client's included); a wrong `password` is `bad_credentials`.
    pub async fn erase_account(&self, password: &str) -> Result<()> {
        let req = Request::AccountErase(request::AccountErase {
            password: password.into(),
        });
        self.answer(self.request_for(&req)?).await?;
        Ok(())
    }
}

/// 5.5 media.
impl Client {
    /// `POST /v1/media`: uploads `body` (bytes, or a `reqwest::Body`
    /// wrapping a stream) declared as `mime`, optionally with its file
    /// name. Over `media.max_bytes`: `content_too_large`; a type the
    /// server does not take: `unsupported_media`.
    pub async fn upload_media(
        &self,
        body: impl Into<reqwest::Body>,
        mime: &str,
        filename: Option<&str>,
    ) -> Result<tern_proto::wire::MediaUploaded> {
        let mut b = self
            .request(Method::POST, "/v1/media")?
            .header(reqwest::header::CONTENT_TYPE, mime)
            .body(body);
        if let Some(f) = filename {
            b = b.query(&[("filename", f)]);
        }
        self.call(b).await
    }

    /// `GET /v1/media/{media}`: the bytes, or bytes `range` of them
    /// (`start..end`, end exclusive and clipped to the size); a range
    /// starting past the end: `range_not_satisfiable`.
    pub async fn download_media(
        &self,
        media: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<bytes::Bytes> {
        let mut b = self.request(Method::GET, &format!("/v1/media/{media}"))?;
        if let Some(r) = range {
            if r.end <= r.start {
                return Err(Error::Invalid("an empty range".into()));
            }
            b = b.header(
                reqwest::header::RANGE,
                format!("bytes={}-{}", r.start, r.end - 1),
            );
        }
        Ok(self.answer(b).await?.bytes().await?)
    }
}

/// Where a device's offline pushes go (5.5 `PUT /v1/push/{device}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushProvider {
    /// Firebase Cloud Messaging: the app's registration token.
    Fcm { token: String },
    /// Apple Push Notification service: the device token (hex).
    Apns { token: String },
    /// A browser's `PushSubscription`: its endpoint and keys (base64url).
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// The server's generic provider: an opaque token its receiver knows.
    Webhook { token: String },
}

impl PushProvider {
    fn body(&self) -> serde_json::Value {
        match self {
            PushProvider::Fcm { token } => json!({"provider": "fcm", "token": token}),
            PushProvider::Apns { token } => json!({"provider": "apns", "token": token}),
            PushProvider::Webhook { token } => json!({"provider": "webhook", "token": token}),
            PushProvider::WebPush {
                endpoint,
                p256dh,
                auth,
            } => json!({
                "provider": "webpush",
                "endpoint": endpoint,
                "keys": {"p256dh": p256dh, "auth": auth},
            }),
        }
    }
}

/// 5.5 offline push.
impl Client {
    /// `PUT /v1/push/{device}`: registers (or replaces) this user's
    /// `device` for offline push. A provider the server has not
    /// configured, a missing token or subscription, or more devices than
    /// the server allows: `invalid`.
    pub async fn register_push(&self, device: &str, provider: &PushProvider) -> Result<()> {
        let path = format!("/v1/push/{}", request::percent(device));
        self.answer(self.request(Method::PUT, &path)?.json(&provider.body()))
            .await?;
        Ok(())
    }

    /// `DELETE /v1/push/{device}`: the device gets no more pushes;
    /// `not_found` when it was not registered.
    pub async fn unregister_push(&self, device: &str) -> Result<()> {
        let path = format!("/v1/push/{}", request::percent(device));
        self.answer(self.request(Method::DELETE, &path)?).await?;
        Ok(())
    }

    /// `GET /v1/push/webpush-key`: the VAPID public key (base64url) a
    /// browser subscribes with; `not_found` when the server has no Web
    /// Push.
    pub async fn webpush_key(&self) -> Result<String> {
        let k: tern_proto::wire::WebPushKey = self
            .call(self.request(Method::GET, "/v1/push/webpush-key")?)
            .await?;
        Ok(k.public_key)
    }
}

/// 5.6 scheduled messages.
impl Client {
    /// `POST /v1/messages` with `at` (set by [`OutMessage::at`]): kept by
    /// the server until then.
    pub async fn schedule_http(&self, msg: OutMessage) -> Result<ScheduledAnswer<'static>> {
        if msg.scheduled_at().is_none() {
            return Err(Error::Invalid("schedule_http needs OutMessage::at".into()));
        }
        self.call(self.request_for(&msg.request())?).await
    }

    /// `GET /v1/scheduled`: this user's pending scheduled messages, by
    /// time.
    pub async fn scheduled(&self) -> Result<ScheduledList<'static>> {
        self.call(self.request(Method::GET, "/v1/scheduled")?).await
    }

    /// `DELETE /v1/scheduled/{id}`: cancels one; `not_found` for an
    /// unknown id or another user's.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<()> {
        let path = format!("/v1/scheduled/{}", request::percent(id));
        self.answer(self.request(Method::DELETE, &path)?).await?;
        Ok(())
    }
}

/// 5.6 account data.
impl Client {
    /// `GET /v1/users/me/export`: this user's data as a zip of JSON
    /// documents (see PROTOCOL.md 5.6), as the server sent it.
    pub async fn export(&self) -> Result<Vec<u8>> {
        let r = self
            .answer(self.request(Method::GET, "/v1/users/me/export")?)
            .await?;
        Ok(r.bytes().await.map_err(Error::Http)?.to_vec())
    }
}
