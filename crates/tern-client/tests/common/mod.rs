//! A real in-process server on 127.0.0.1 for the SDK's tests, with cheap
//! password hashing, a fresh data dir, and restarts on the same address
//! and data.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tern_client::{Client, ClientConfig, Event, Events};
use tern_server::Config;

/// How long a test waits for something it expects.
pub const WAIT: Duration = Duration::from_secs(15);
pub const PASSWORD: &str = "password1";

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: Option<tempfile::TempDir>,
    tweak: fn(&mut Config),
}

fn config(dir: &std::path::Path, tweak: fn(&mut Config)) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.auth.argon2_m_cost_kib = 8;
    cfg.auth.argon2_t_cost = 1;
    cfg.auth.weak_hashing_for_tests = true;
    cfg.rate.register_rate = 1_000_000;
    cfg.rate.register_burst = 1_000_000;
    cfg.rate.upgrade_rate = 1_000_000;
    cfg.rate.upgrade_burst = 1_000_000;
    tweak(&mut cfg);
    cfg
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: fn(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::run(listener, dir, tweak)
    }

    fn run(
        listener: tokio::net::TcpListener,
        dir: tempfile::TempDir,
        tweak: fn(&mut Config),
    ) -> Server {
        let addr = listener.local_addr().unwrap();
        let cfg = config(dir.path(), tweak);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tern_server::serve(listener, cfg, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
            dir: Some(dir),
            tweak,
        }
    }

    /// Graceful shutdown (connections close with 1001).
    pub async fn stop(&mut self) {
        self.stop.take().unwrap().send(()).ok();
        let t = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
    }

    /// Starts again on the same address and data dir.
    pub async fn restart(&mut self) {
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let s = Server::run(listener, self.dir.take().unwrap(), self.tweak);
        *self = s;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url()).unwrap()
    }

    pub fn client_with(&self, cfg: ClientConfig) -> Client {
        Client::with_config(&self.url(), cfg).unwrap()
    }

    /// Registers `user` and returns a logged-in client.
    pub async fn user(&self, user: &str) -> Client {
        self.user_with(user, ClientConfig::default()).await
    }

    pub async fn user_with(&self, user: &str, cfg: ClientConfig) -> Client {
        let c = self.client_with(cfg);
        c.register(user, PASSWORD, None).await.unwrap();
        c.login(user, PASSWORD).await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The next event that `pick` accepts, skipping others; panics after WAIT.
pub async fn expect<T>(
    events: &mut Events,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let find = async {
        loop {
            match events.recv().await {
                Some(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                None => panic!("events ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(WAIT, find)
        .await
        .unwrap_or_else(|_| panic!("no {what} in time"))
}

/// The next `n` messages (skipping other events): (seq, text content).
pub async fn messages(events: &mut Events, n: usize) -> Vec<tern_client::wire::MsgView<'static>> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = expect(events, "a message", |e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await;
        out.push(m);
    }
    out
}

/// Text content of a message, decoded.
pub fn text(m: &tern_client::wire::MsgView<'_>) -> String {
    m.content
        .as_ref()
        .and_then(|c| serde_json::from_str::<String>(c.get()).ok())
        .unwrap_or_default()
}

/// Events until none comes for `quiet` (to check that nothing more arrives).
pub async fn drain(events: &mut Events, quiet: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, events.recv()).await {
        out.push(ev);
    }
    out
}
