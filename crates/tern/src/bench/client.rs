//! The bench's client side: user and group setup through the SDK
//! (`tern_client::Client`, spread over source addresses), WebSocket
//! connections of its own (optionally from a chosen source address), and a
//! borrowed, allocation-light parse of the frames the server pushes.
//!
//! Why the load path keeps its own client: the SDK's `Session` costs the
//! bench measurably more CPU per message. `tern bench dm` against the same
//! release server, 100 pairs, the bench's CPU time over the run
//! (`client_cpu_s`, user + system) per 100,000 stored messages, two runs
//! of each, alternated, on 2 cores shared with other builds:
//!
//! | offered | this client | `--sdk` (`Session`) | SDK extra |
//! |---|---|---|---|
//! | 2,000/s, 25 s | 8.16 s, 8.07 s | 10.14 s, 9.39 s | +20 % |
//! | 5,000/s, 20 s | 4.30 s, 4.83 s | 5.87 s, 5.74 s | +27 % |
//!
//! (`tern bench dm [--sdk] --pairs 100 --rate R --duration D --json`;
//! docs/BENCHMARKS.md has the section.) On two cores shared with the
//! server, a fifth more client CPU is server CPU the bench takes away, so
//! the raw path stays for the load; the SDK does all the setup.

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_client::{Client, ClientConfig, Error};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;
pub type Sink = SplitSink<Ws, Message>;
pub type Stream = SplitStream<Ws>;

/// Every bench user gets this password.
const PASSWORD: &str = "bench-password";

/// Where the server's nodes are and how to reach them. Setup (users,
/// groups) goes to the first node; connections are spread over all of
/// them, connection `i` to node `i % nodes`.
#[derive(Clone)]
pub struct Target {
    /// Per node: the base URL, the WebSocket URL and the socket address.
    pub nodes: Vec<(String, String, SocketAddr)>,
    /// SDK clients of the first node, each from its own source address
    /// 127.0.0.x when the server is on loopback: registrations and logins
    /// are spread over them, so a server with the default per-address
    /// limits serves the bench's setup as it would serve many real clients.
    clients: Vec<Client>,
    next_client: Arc<std::sync::atomic::AtomicUsize>,
}

/// Source addresses 127.0.0.2 .. 127.0.0.(2 + HTTP_SOURCES - 1) for setup
/// requests to a loopback server.
const HTTP_SOURCES: u8 = 250;

/// How often a request answered 429 (an upgrade: 429 or 503) is retried
/// after its `Retry-After`.
const RETRIES_429: u32 = 20;

/// How long one setup request may take (adding 1,000 members to a large
/// group under load is slow).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `call` again after its `Retry-After` (1 s if none) while the
/// server answers 429, up to [`RETRIES_429`] times.
async fn retry_429<T, F, Fut>(mut call: F) -> tern_client::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = tern_client::Result<T>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(Error::Server {
                status: Some(429),
                retry_after,
                ..
            }) if tries < RETRIES_429 => {
                tries += 1;
                let secs = retry_after.unwrap_or(1).min(60);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            r => return r,
        }
    }
}

impl Target {
    pub async fn new(urls: &[String]) -> anyhow::Result<Target> {
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.trim_end_matches('/');
            let host = url
                .strip_prefix("http://")
                .ok_or_else(|| anyhow!("--url must start with http:// (got {url})"))?;
            let addr = tokio::net::lookup_host(host)
                .await
                .with_context(|| format!("resolving {host}"))?
                .next()
                .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
            nodes.push((url.to_owned(), format!("ws://{host}/v1/ws"), addr));
        }
        let http = nodes
            .first()
            .ok_or_else(|| anyhow!("at least one --url"))?
            .0
            .clone();
        let loopback_v4 = nodes[0].2.ip().is_loopback() && nodes[0].2.is_ipv4();
        let sources: Vec<Option<IpAddr>> = if loopback_v4 {
            (0..HTTP_SOURCES)
                .map(|i| Some(IpAddr::from([127, 0, 0, 2 + i])))
                .collect()
        } else {
            vec![None]
        };
        let mut clients = Vec::with_capacity(sources.len());
        for source in sources {
            let cfg = ClientConfig {
                request_timeout: SETUP_TIMEOUT,
                local_address: source,
                ..ClientConfig::default()
            };
            clients.push(Client::with_config(&http, cfg)?);
        }
        Ok(Target {
            nodes,
            clients,
            next_client: Default::default(),
        })
    }

    /// The first node's address (to tell whether the server is on loopback).
    pub fn addr(&self) -> SocketAddr {
        self.nodes[0].2
    }

    /// The next setup client (round robin over the source addresses).
    fn client(&self) -> &Client {
        let n = self
            .next_client
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[n % self.clients.len()]
    }

    /// A setup client carrying `token`.
    pub fn client_for(&self, token: &str) -> Client {
        self.client().with_token(token)
    }

    /// Creates (or reuses) `user` and returns a session token for it.
    pub async fn user(&self, user: &str) -> anyhow::Result<String> {
        let c = self.client();
        match retry_429(|| c.register(user, PASSWORD, None)).await {
            Ok(()) => {}
            // Already there (a run with a given --prefix): log in.
            Err(Error::Server {
                status: Some(409), ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {user}")),
        }
        let me = retry_429(|| c.login(user, PASSWORD))
            .await
            .with_context(|| format!("logging in {user}"))?;
        Ok(me.token().context("a login without a token")?.to_owned())
    }

    /// Creates the users concurrently; returns their tokens in order.
    pub async fn users(
        &self,
        names: &[String],
        concurrency: usize,
        progress: bool,
    ) -> anyhow::Result<Vec<String>> {
        let bar = bar(progress, names.len() as u64, "users");
        let tokens: Vec<(usize, String)> = futures_util::stream::iter(names.iter().enumerate())
            .map(|(i, n)| {
                let bar = bar.clone();
                async move {
                    let t = self.user(n).await?;
                    bar.inc(1);
                    Ok::<_, anyhow::Error>((i, t))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        bar.finish_and_clear();
        let mut out = vec![String::new(); names.len()];
        for (i, t) in tokens {
            out[i] = t;
        }
        Ok(out)
    }

    /// Adds `members` (at most 1000, the protocol's per-call limit) to
    /// `gid`.
    pub async fn add_members(
        &self,
        owner_token: &str,
        gid: &str,
        members: &[&str],
    ) -> anyhow::Result<()> {
        let c = self.client_for(owner_token);
        retry_429(|| c.add_members(gid, members))
            .await
            .context("adding group members")?;
        Ok(())
    }

    /// Creates a group owned by `owner` holding `members` (added 1000 at a
    /// time, the protocol's per-call limit); returns its group id.
    pub async fn group(
        &self,
        owner_token: &str,
        owner: &str,
        members: &[String],
    ) -> anyhow::Result<String> {
        let others: Vec<&str> = members
            .iter()
            .map(String::as_str)
            .filter(|m| *m != owner)
            .collect();
        let mut chunks = others.chunks(1000);
        let first = chunks.next().unwrap_or_default();
        let c = self.client_for(owner_token);
        let g = retry_429(|| c.create_group("bench", first))
            .await
            .context("creating a group")?;
        let gid = g.group.into_owned();
        for chunk in chunks {
            self.add_members(owner_token, &gid, chunk).await?;
        }
        Ok(gid)
    }

    /// Opens an authenticated WebSocket for `token`/`device` on node
    /// `i % nodes` and waits for `offline_done`, so the connection is quiet
    /// when this returns.
    pub async fn connect(
        &self,
        i: usize,
        token: &str,
        device: &str,
        source: Option<IpAddr>,
    ) -> anyhow::Result<Ws> {
        let (_, ws_url, addr) = &self.nodes[i % self.nodes.len()];
        let url = format!("{ws_url}?token={token}&device={device}");
        let mut tries = 0;
        let mut ws = loop {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(ip) = source {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let stream = socket.connect(*addr).await?;
            stream.set_nodelay(true)?;
            match tokio_tungstenite::client_async_with_config(
                &url,
                stream,
                Some(tern_client::raw::websocket_config()),
            )
            .await
            {
                Ok((ws, _)) => break ws,
                // Upgrades are admitted at the server's pace: wait as told,
                // spread by a little jitter, and try again.
                Err(tokio_tungstenite::tungstenite::Error::Http(r))
                    if matches!(r.status().as_u16(), 429 | 503) && tries < RETRIES_429 =>
                {
                    tries += 1;
                    let secs = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(60);
                    let jitter = std::time::Duration::from_millis((i as u64 * 7919) % 500);
                    tokio::time::sleep(std::time::Duration::from_secs(secs) + jitter).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        loop {
            let m = ws
                .next()
                .await
                .ok_or_else(|| anyhow!("closed before offline_done"))??;
            if let Message::Text(t) = &m {
                let f: In = serde_json::from_str(t.as_str())?;
                match f.ty {
                    "offline_done" => return Ok(ws),
                    "error" => bail!("connect refused: {}", t.as_str()),
                    _ => {}
                }
            } else if let Message::Close(c) = m {
                bail!("closed while connecting: {c:?}");
            }
        }
    }

    /// Opens many connections with bounded concurrency, in order.
    pub async fn connect_all(
        self: &Arc<Self>,
        logins: &[(String, String)],
        concurrency: usize,
        progress: bool,
        source: impl Fn(usize) -> Option<IpAddr>,
    ) -> anyhow::Result<Vec<Ws>> {
        let bar = bar(progress, logins.len() as u64, "connections");
        let conns: Vec<(usize, Ws)> = futures_util::stream::iter(logins.iter().enumerate())
            .map(|(i, (token, device))| {
                let bar = bar.clone();
                let src = source(i);
                async move {
                    let ws = self.connect(i, token, device, src).await?;
                    bar.inc(1);
                    Ok::<_, anyhow::Error>((i, ws))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        bar.finish_and_clear();
        let mut sorted: Vec<Option<Ws>> = (0..logins.len()).map(|_| None).collect();
        for (i, ws) in conns {
            sorted[i] = Some(ws);
        }
        Ok(sorted
            .into_iter()
            .map(|w| w.expect("every index connected"))
            .collect())
    }
}

/// A progress bar on stderr, hidden when `show` is false or stderr is not a
/// terminal.
pub fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}

/// A fresh run prefix: user ids of this run start with it.
pub fn run_prefix(given: &Option<String>) -> String {
    given.clone().unwrap_or_else(|| format!("b{}", run_nonce()))
}

/// A token of this run, different in every run: the `client_msg_id`s of
/// a run start with it, so that a run reusing another's users (`--prefix`)
/// sends new messages instead of retries the server answers from its dedup
/// index without storing or pushing anything.
pub fn run_nonce() -> String {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE
        .get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{:x}", (nanos as u64) ^ u64::from(std::process::id()))
        })
        .clone()
}

/// A server frame, parsed without copying.
#[derive(Deserialize)]
pub struct In<'a> {
    #[serde(rename = "type")]
    pub ty: &'a str,
    #[serde(default)]
    pub id: Option<&'a str>,
    #[serde(default, borrow)]
    pub msg: Option<MsgIn<'a>>,
    #[serde(default, borrow)]
    pub frames: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    pub content: Option<&'a RawValue>,
    /// A send's `ok`: where the message was stored.
    #[serde(default)]
    pub conv: Option<&'a str>,
    #[serde(default)]
    pub seq: Option<u64>,
}

#[derive(Deserialize)]
pub struct MsgIn<'a> {
    pub conv: &'a str,
    pub seq: u64,
    #[serde(borrow)]
    pub content: Option<&'a RawValue>,
}

/// The send time the bench wrote into a message's content: a JSON string of
/// nanoseconds since the run's base instant.
pub fn stamp(content: Option<&RawValue>) -> Option<u64> {
    content?.get().trim_matches('"').parse().ok()
}

/// Nanoseconds since `base`, as written into content.
pub fn nanos_since(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}
