//! Test harness: a real server on 127.0.0.1:0 with its own data directory,
//! an HTTP client, and a small WebSocket client that reads frames with
//! timeouts (never a sleep-and-hope).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tern_server::Config;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
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
        Server {
            addr,
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

    /// Registers `user` (password "password1") and returns a token.
    pub async fn user(&self, user: &str) -> String {
        let (st, b) = self
            .post(
                "/v1/users",
                None,
                json!({"user": user, "password": "password1"}),
            )
            .await;
        assert_eq!(st, 201, "register {user}: {b}");
        self.login(user).await
    }

    pub async fn login(&self, user: &str) -> String {
        let (st, b) = self
            .post(
                "/v1/sessions",
                None,
                json!({"user": user, "password": "password1"}),
            )
            .await;
        assert_eq!(st, 200, "login {user}: {b}");
        b["token"].as_str().unwrap().to_owned()
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
        let (st, v) = self
            .post(
                "/v1/groups",
                Some(token),
                json!({"name": name, "members": members}),
            )
            .await;
        assert_eq!(st, 201, "create group: {v}");
        v["group"].as_str().unwrap().to_owned()
    }

    /// Adds users to a group as the user of `token`; returns the answer.
    pub async fn add_members(&self, token: &str, group: &str, users: &[&str]) -> Value {
        let (st, v) = self
            .post(
                &format!("/v1/groups/{group}/members"),
                Some(token),
                json!({ "users": users }),
            )
            .await;
        assert_eq!(st, 200, "add members: {v}");
        v
    }

    /// Removes `user` from a group as the user of `token`.
    pub async fn remove_member(&self, token: &str, group: &str, user: &str) {
        let (st, v) = self
            .delete(&format!("/v1/groups/{group}/members/{user}"), Some(token))
            .await;
        assert_eq!(st, 204, "remove {user}: {v}");
    }

    /// Makes two users friends.
    pub async fn befriend(&self, a: (&str, &str), b: (&str, &str)) {
        let (st, v) = self.put(&format!("/v1/friends/{}", b.0), Some(a.1)).await;
        assert_eq!((st, v["status"].as_str()), (200, Some("requested")), "{v}");
        let (st, v) = self.put(&format!("/v1/friends/{}", a.0), Some(b.1)).await;
        assert_eq!((st, v["status"].as_str()), (200, Some("friends")), "{v}");
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
        let mut c = Client::open(&self.ws_url()).await;
        let ok = c
            .request(json!({"type": "auth", "token": token, "device": device}))
            .await;
        assert_eq!(ok["type"], "ok", "auth: {ok}");
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

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client that splits `batch` frames and queues frames that
/// arrive while it waits for a reply.
pub struct Client {
    ws: Ws,
    queued: VecDeque<Value>,
    next_id: u64,
    /// Set once the server closed: the close code.
    pub closed: Option<u16>,
    /// How many `batch` frames arrived.
    pub batches: usize,
}

impl Client {
    pub async fn open(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Client {
            ws,
            queued: VecDeque::new(),
            next_id: 1,
            closed: None,
            batches: 0,
        }
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// Sends unless the connection is already gone.
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(Message::Text(v.to_string().into())).await;
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
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        v["id"] = json!(id);
        self.send(v).await;
        id
    }

    /// The `ok`, `error` or `pong` that answers request `id`; other frames
    /// stay queued for `next`.
    pub async fn reply(&mut self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut checked = 0;
        loop {
            let hit = self.queued.iter().skip(checked).position(|f| {
                f["id"] == json!(id) && matches!(f["type"].as_str(), Some("ok" | "error" | "pong"))
            });
            if let Some(i) = hit {
                return self.queued.remove(checked + i).unwrap();
            }
            checked = self.queued.len();
            if !self.fill(deadline).await {
                panic!("no reply to {id}");
            }
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
            let f = self
                .read_until(deadline)
                .await
                .unwrap_or_else(|| panic!("no {ty} frame"));
            if f["type"] == ty {
                return f;
            }
        }
    }

    pub async fn next_within(&mut self, d: Duration) -> Option<Value> {
        self.read_until(tokio::time::Instant::now() + d).await
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

    async fn read_until(&mut self, deadline: tokio::time::Instant) -> Option<Value> {
        while self.queued.is_empty() {
            if !self.fill(deadline).await {
                return None;
            }
        }
        self.queued.pop_front()
    }

    /// Reads one WebSocket message and queues its frames (a `batch` is
    /// split). False on timeout or once the connection is closed.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        loop {
            if self.closed.is_some() {
                return false;
            }
            let m = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed.get_or_insert(1006);
                    return false;
                }
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "batch" {
                        let frames = v["frames"].as_array().unwrap().clone();
                        assert!(frames.len() > 1, "a batch merges several frames: {v}");
                        self.batches += 1;
                        self.queued.extend(frames);
                    } else {
                        self.queued.push_back(v);
                    }
                    return true;
                }
                Message::Close(c) => {
                    self.closed = Some(c.map(|c| u16::from(c.code)).unwrap_or(1005));
                }
                _ => {}
            }
        }
    }

    /// Waits for the server to close the connection; returns the code.
    /// Frames before the close are dropped.
    pub async fn closed_with(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.closed.is_none() {
            self.queued.clear();
            if tokio::time::Instant::now() > deadline {
                panic!("connection not closed");
            }
            let _ = self.read_until(deadline).await;
        }
        self.closed.unwrap()
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        // Drain until the server answers the close.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
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
