//! Test harness: a real server on 127.0.0.1:0 with its own data directory,
//! and clients of the SDK (`tern-client`): its typed HTTP calls for
//! accounts, friends and groups, and a WebSocket client over
//! `tern_client::raw` that reads frames with timeouts (never a
//! sleep-and-hope).
//!
//! `Server::post`, `get`, `put` and `delete` stay on plain reqwest: they
//! return the raw status and body, for tests of bad input on purpose (bad
//! JSON, wrong content type, oversize bodies) and of exact statuses and
//! error bodies, which a typed client would hide.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tern_client::raw::{Connection, Frame, Incoming};
use tern_client::wire::{FriendState, GroupAnswer};
use tern_client::{ClientConfig, Events, Session};
use tern_server::Config;

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);
/// Every test user's password.
pub const PASSWORD: &str = "password1";

/// The SDK's settings for tests: calls wait as long as the tests do.
pub fn sdk_config() -> ClientConfig {
    ClientConfig {
        request_timeout: WAIT,
        ..ClientConfig::default()
    }
}

pub struct Server {
    pub addr: SocketAddr,
    /// The SDK's HTTP client, without a token (see `Server::as_user`).
    pub api: tern_client::Client,
    /// Plain HTTP, for raw statuses and bodies.
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

/// A config for tests: cheap password hashing, a fresh data dir.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.auth.argon2_m_cost_kib = 8;
    cfg.auth.argon2_t_cost = 1;
    // Every test client comes from 127.0.0.1: tests that are not about
    // limits register and connect freely (limits.rs starts from the
    // defaults instead, with `default_rates`).
    cfg.rate.register_rate = 1_000_000;
    cfg.rate.register_burst = 1_000_000;
    cfg.rate.upgrade_rate = 1_000_000;
    cfg.rate.upgrade_burst = 1_000_000;
    cfg.auth.weak_hashing_for_tests = true;
    cfg
}

/// Puts back the default rate limits that `test_config` raises.
pub fn default_rates(cfg: &mut Config) {
    cfg.rate = tern_server::config::RateConfig::default();
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server::start_in(dir, tweak).await
    }

    /// Starts a server on an existing data dir (to test restarts).
    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> Server {
        // RUST_LOG=debug shows the server's events while debugging a test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tern_server::serve(listener, cfg, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        let api = tern_client::Client::with_config(&format!("http://{addr}"), sdk_config())
            .expect("a valid URL");
        Server {
            addr,
            api,
            http,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.stop.take().unwrap().send(()).ok();
        let r = tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap()).await;
        r.expect("server stops in time").unwrap().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, tmp)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// POST with a JSON body; returns (status, body or Null).
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.put(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await.unwrap()).await
    }

    /// The SDK's HTTP client acting with `token`.
    pub fn as_user(&self, token: &str) -> tern_client::Client {
        self.api.with_token(token)
    }

    /// Registers `user` (password `PASSWORD`) and returns a token.
    pub async fn user(&self, user: &str) -> String {
        if let Err(e) = self.api.register(user, PASSWORD, None).await {
            panic!("register {user}: {e}");
        }
        self.login(user).await
    }

    pub async fn login(&self, user: &str) -> String {
        match self.api.login(user, PASSWORD).await {
            Ok(c) => c.token().expect("a token after login").to_owned(),
            Err(e) => panic!("login {user}: {e}"),
        }
    }

    /// Registers many users concurrently; returns their tokens in order.
    pub async fn users(&self, names: &[String]) -> Vec<String> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(names)
            .map(|n| self.user(n))
            .buffered(32)
            .collect()
            .await
    }

    /// Creates a group as the user of `token`; returns its id.
    pub async fn new_group(&self, token: &str, name: &str, members: &[&str]) -> String {
        match self.as_user(token).create_group(name, members).await {
            Ok(g) => g.group.into_owned(),
            Err(e) => panic!("create group: {e}"),
        }
    }

    /// Adds users to a group as the user of `token`; returns the answer.
    pub async fn add_members(
        &self,
        token: &str,
        group: &str,
        users: &[&str],
    ) -> GroupAnswer<'static> {
        match self.as_user(token).add_members(group, users).await {
            Ok(g) => g,
            Err(e) => panic!("add members: {e}"),
        }
    }

    /// Removes `user` from a group as the user of `token`.
    pub async fn remove_member(&self, token: &str, group: &str, user: &str) {
        if let Err(e) = self.as_user(token).remove_member(group, user).await {
            panic!("remove {user}: {e}");
        }
    }

    /// Makes two users friends.
    pub async fn befriend(&self, a: (&str, &str), b: (&str, &str)) {
        for ((from, token), to, status) in [
            (a, b.0, FriendState::Requested),
            (b, a.0, FriendState::Friends),
        ] {
            match self.as_user(token).add_friend(to).await {
                Ok(f) => assert_eq!(f.status, status, "{from} asks {to}"),
                Err(e) => panic!("{from} asks {to}: {e}"),
            }
        }
    }

    /// The SDK's session of `token` as `device`, for tests of what an
    /// application sees rather than of the frames.
    pub async fn session(&self, token: &str, device: &str) -> (Session, Events) {
        match self.as_user(token).connect(device).await {
            Ok(s) => s,
            Err(e) => panic!("session of {device}: {e}"),
        }
    }

    /// A connected, authenticated device; the offline batch is consumed.
    pub async fn connect(&self, token: &str, device: &str) -> Client {
        let (c, _) = self.connect_offline(token, device).await;
        c
    }

    /// Connects and returns the pushed offline messages and `offline_done`.
    pub async fn connect_offline(
        &self,
        token: &str,
        device: &str,
    ) -> (Client, (Vec<Value>, Value)) {
        let conn = Connection::connect(&self.ws_url(), token, device, &sdk_config()).await;
        let mut c = Client {
            conn: conn.unwrap_or_else(|e| panic!("auth: {e}")).0,
        };
        let mut msgs = Vec::new();
        loop {
            let f = c.next().await;
            match f["type"].as_str() {
                Some("msg") => msgs.push(f),
                Some("offline_done") => return (c, (msgs, f)),
                _ => panic!("unexpected frame before offline_done: {f}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (st, v)
}

/// A test's WebSocket client: a thin layer over the SDK's
/// [`raw::Connection`] that speaks JSON values, panics with the frame in
/// the message when something is off, and checks that every `batch`
/// merges several frames.
pub struct Client {
    conn: Connection,
}

/// A frame as a JSON value, once it is checked.
fn value(f: Frame) -> Value {
    if let Some(n) = f.in_batch() {
        assert!(n > 1, "a batch merges several frames: {f}");
    }
    f.value()
}

impl Client {
    /// A connection that has sent nothing yet.
    pub async fn open(url: &str) -> Client {
        Client {
            conn: Connection::open(url, &sdk_config()).await.unwrap(),
        }
    }

    /// Sends any text, JSON or not.
    pub async fn send_raw(&mut self, text: &str) {
        self.conn.send_text(text).await.unwrap();
    }

    /// Sends a WebSocket ping frame.
    pub async fn ws_ping(&mut self, payload: &[u8]) {
        self.conn.ping(payload.to_vec()).await.unwrap();
    }

    /// Sends unless the connection is already gone.
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.conn.send_text(v.to_string()).await.is_ok()
    }

    pub async fn send(&mut self, v: Value) {
        self.conn.send_text(v.to_string()).await.unwrap();
    }

    /// Sends `v` with a fresh `id` and returns the `ok` or `error` that
    /// carries it; other frames stay queued for `next`.
    pub async fn request(&mut self, v: Value) -> Value {
        let id = self.submit(v).await;
        self.reply(&id).await
    }

    /// Sends `v` with a fresh `id` without waiting; returns the id, for
    /// `reply`. Lets a test pipeline many requests.
    pub async fn submit(&mut self, mut v: Value) -> String {
        let id = self.conn.next_id();
        v["id"] = json!(id);
        self.send(v).await;
        id
    }

    /// The `ok`, `error` or `pong` that answers request `id`; other frames
    /// stay queued for `next`.
    pub async fn reply(&mut self, id: &str) -> Value {
        match self.conn.reply(id, WAIT).await {
            Ok(f) => value(f),
            Err(e) => panic!("no reply to {id}: {e}"),
        }
    }

    /// Waits until every frame this connection sent before has taken
    /// effect (frames are handled in order; a ping is answered after them).
    pub async fn barrier(&mut self) {
        let r = self.request(json!({"type": "ping"})).await;
        assert_eq!(r["type"], "pong", "{r}");
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, v: Value) -> Value {
        let r = self.request(v.clone()).await;
        assert_eq!(r["type"], "ok", "request {v} failed: {r}");
        r
    }

    /// A request that must fail with `code`.
    pub async fn err(&mut self, v: Value, code: &str) -> Value {
        let r = self.request(v.clone()).await;
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str()),
            (Some("error"), Some(code)),
            "request {v}: {r}"
        );
        r
    }

    pub async fn send_text(&mut self, to: &str, cmid: &str, text: &str) -> Value {
        self.ok(json!({"type": "send", "to": to, "client_msg_id": cmid, "kind": "text", "content": text})).await
    }

    /// A text message to a group that must be stored.
    pub async fn send_group(&mut self, group: &str, cmid: &str, text: &str) -> Value {
        self.ok(json!({"type": "send", "group": group, "client_msg_id": cmid, "kind": "text", "content": text})).await
    }

    /// The next `msg` push, skipping other frames; returns the inner `msg`.
    pub async fn next_msg(&mut self) -> Value {
        self.next_of("msg").await["msg"].clone()
    }

    /// The next frame (batches split), or panics after `WAIT`.
    pub async fn next(&mut self) -> Value {
        self.next_within(WAIT)
            .await
            .expect("a frame within the wait")
    }

    /// The next frame of `ty`, skipping (and dropping) others.
    pub async fn next_of(&mut self, ty: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self
                .next_within(left)
                .await
                .unwrap_or_else(|| panic!("no {ty} frame"));
            if f["type"] == ty {
                return f;
            }
        }
    }

    /// The next frame within `d`; `None` when none came or the connection
    /// is closed.
    pub async fn next_within(&mut self, d: Duration) -> Option<Value> {
        match self.conn.next_frame(d).await {
            Ok(f) => Some(value(f)),
            Err(
                tern_client::Error::Timeout
                | tern_client::Error::Closed(_)
                | tern_client::Error::Disconnected,
            ) => None,
            Err(e) => panic!("bad frame: {e}"),
        }
    }

    /// The frames that arrive before the next WebSocket ping or pong (or
    /// until none has for `d`), and whether one ended them. Pings are
    /// answered as they are read.
    pub async fn until_ping(&mut self, d: Duration) -> (Vec<Value>, bool) {
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout(d, self.conn.recv()).await {
                Ok(Incoming::Frame(f)) => out.push(value(f)),
                Ok(Incoming::Other) => return (out, true),
                Ok(Incoming::Undecodable(t)) => panic!("bad frame: {t}"),
                Ok(Incoming::Closed(_)) | Err(_) => return (out, false),
            }
        }
    }

    /// Every frame that arrives until none has for `d`.
    pub async fn drain(&mut self, d: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.next_within(d).await {
            out.push(f);
        }
        out
    }

    /// Asserts no frame arrives within `d`.
    pub async fn quiet(&mut self, d: Duration) {
        if let Some(f) = self.next_within(d).await {
            panic!("unexpected frame: {f}");
        }
    }

    /// The close code, once the server has closed the connection.
    pub fn closed(&self) -> Option<u16> {
        self.conn.closed().map(|c| c.code)
    }

    /// How many `batch` frames arrived.
    pub fn batches(&self) -> u64 {
        self.conn.batches()
    }

    /// Waits for the server to close the connection; returns the code.
    /// Frames before the close are dropped.
    pub async fn closed_with(&mut self) -> u16 {
        match self.conn.wait_closed(Duration::from_secs(20)).await {
            Ok(c) => c.code,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }

    pub async fn close(self) {
        self.conn.close(Duration::from_secs(5)).await;
    }
}

/// The seqs of a list of messages.
pub fn seqs(msgs: &Value) -> Vec<u64> {
    msgs.as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// `dm:<a>:<b>` with a < b.
pub fn dm(a: &str, b: &str) -> String {
    if a <= b {
        format!("dm:{a}:{b}")
    } else {
        format!("dm:{b}:{a}")
    }
}
