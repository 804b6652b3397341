//! A `tern serve` child process for the process-level tests: started with
//! cheap password hashing and no inherited `TERN_*` variables, its bound
//! address read from its `tern: listening on ADDR` line, killed by a drop
//! guard so a failing test never leaks a process. Accounts are made through
//! the SDK (`tern_client::Client`); the raw HTTP helpers remain for answers
//! the SDK turns into errors (status codes, error bodies).

#![allow(dead_code)]

pub mod peer;
pub mod relay;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// How long a test waits for anything it expects (a frame, a start-up, an exit).
pub const WAIT: Duration = Duration::from_secs(15);
/// Every test user's password.
pub const PASSWORD: &str = "password1";

/// A `tern serve` child process. Dropping it kills the process (SIGKILL).
pub struct Tern {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

/// A `tern` command with cheap password hashing and no inherited `TERN_*`
/// variables (so the developer's environment cannot leak into a test).
pub fn tern_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TERN_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("TERN_AUTH__ARGON2_M_COST_KIB", "8")
        .env("TERN_AUTH__ARGON2_T_COST", "1")
        .env("INSECURE_TERN_TEST_WEAK_HASHING", "1")
        .env(
            "RUST_LOG",
            std::env::var("TERN_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Collects a child's stderr in the background (so the pipe never fills).
pub fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("stderr piped");
    let b = buf.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        loop {
            match err.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => b
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    });
    buf
}

/// `tern serve --listen 127.0.0.1:0 --data DIR`, to add settings to
/// before [`Tern::spawn`].
pub fn serve_cmd(data: &Path) -> Command {
    tern_cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().expect("UTF-8 path"),
    ])
}

impl Tern {
    /// `tern serve --listen 127.0.0.1:0 --data DIR`.
    pub async fn start(data: &Path) -> Tern {
        Tern::spawn(serve_cmd(data)).await
    }

    /// Spawns `cmd` and waits for its `tern: listening on ADDR` line.
    pub async fn spawn(mut cmd: Command) -> Tern {
        let mut child = cmd.spawn().expect("spawn tern");
        let stderr = drain_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = match timeout(WAIT, lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            other => {
                let _ = child.start_kill();
                let status = timeout(WAIT, child.wait()).await;
                // Give the drain task a moment to collect the last bytes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "tern did not report its address ({other:?}); exit {status:?}; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr: SocketAddr = line
            .strip_prefix("tern: listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let t = Tern {
            child,
            addr,
            stderr,
            http: reqwest::Client::new(),
        };
        // The line is printed once the socket is bound, which is before the
        // store is opened: wait until the server answers.
        t.ready().await;
        t
    }

    /// Waits for `GET /healthz` to answer 200.
    pub async fn ready(&self) {
        let poll = async {
            loop {
                if let Ok(r) = self.http.get(self.url("/healthz")).send().await {
                    if r.status().is_success() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if timeout(WAIT, poll).await.is_err() {
            panic!("/healthz never answered 200; stderr:\n{}", self.stderr());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, then reap.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        timeout(WAIT, self.child.wait())
            .await
            .expect("killed child exits")
            .expect("wait");
    }

    /// Sends SIGTERM through `kill(1)` (no extra crate needed).
    pub fn sigterm(&self) {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(st.success(), "kill -TERM failed: {st}");
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match timeout(limit, self.child.wait()).await {
            Ok(r) => r.expect("wait"),
            Err(_) => panic!(
                "tern did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// An SDK client of this server, without a token.
    pub fn client(&self) -> tern_client::Client {
        tern_client::Client::new(&self.url("")).expect("server URL")
    }

    /// An SDK client of this server carrying `token`.
    pub fn client_for(&self, token: &str) -> tern_client::Client {
        self.client().with_token(token)
    }
}

/// HTTP helpers.
impl Tern {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self.http.post(self.url(path)).json(&body).send();
        let r = timeout(WAIT, req)
            .await
            .expect("HTTP in time")
            .expect("HTTP");
        answer(r).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    /// Any call: method, path, bearer token, JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let req = req.send();
        let r = timeout(WAIT, req)
            .await
            .expect("HTTP in time")
            .expect("HTTP");
        answer(r).await
    }

    pub async fn register(&self, user: &str) {
        timeout(WAIT, self.client().register(user, PASSWORD, None))
            .await
            .expect("register in time")
            .unwrap_or_else(|e| panic!("register {user}: {e}"));
    }

    /// Logs in; the session token.
    pub async fn login(&self, user: &str) -> String {
        self.login_client(user)
            .await
            .token()
            .expect("a token")
            .to_owned()
    }

    /// Logs in; an SDK client carrying the new token.
    pub async fn login_client(&self, user: &str) -> tern_client::Client {
        timeout(WAIT, self.client().login(user, PASSWORD))
            .await
            .expect("login in time")
            .unwrap_or_else(|e| panic!("login {user}: {e}"))
    }

    /// Registers and logs in.
    pub async fn user(&self, user: &str) -> String {
        self.register(user).await;
        self.login(user).await
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        // kill_on_drop also does this; being explicit costs nothing.
        let _ = self.child.start_kill();
        // A failing test shows what each of its servers logged last.
        if std::thread::panicking() {
            let log = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(120).collect();
            eprintln!(
                "--- tern {} stderr (last {} lines) ---",
                self.addr,
                tail.len()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

pub async fn answer(r: reqwest::Response) -> (u16, Value) {
    let st = r.status().as_u16();
    let text = timeout(WAIT, r.text())
        .await
        .expect("HTTP body in time")
        .expect("HTTP body");
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (st, v)
}
