//! The bus on NATS JetStream; the stream and subject layout is described in
//! the crate docs.

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_core::bus::{
    Bus, Envelope, Forward, ForwardAnswer, ForwardHandler, Forwarding, Inbound, PlumbingError,
    PlumbingResult,
};
use tern_core::NodeId;
use tokio::sync::{mpsc, watch};

mod consumer;
mod publisher;
use consumer::Consumer;
use publisher::Publisher;

/// Bound on API calls and publish acks.
const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// Publishes whose acks are awaited at once.
const WINDOW: usize = 256;
/// A consumer without pull requests for this long is removed by the
/// server (a dead node's).
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);
/// Pull requests: the server's idle heartbeat and the request lifetime
/// (a silent consumer is noticed after two missed heartbeats).
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
const PULL_EXPIRES: Duration = Duration::from_secs(15);
/// Envelopes asked for per pull request.
const PULL_BATCH: usize = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// Publish attempts while connected, for errors other than the broker
/// being unreachable.
const MAX_CONNECTED_ATTEMPTS: u32 = 5;
/// After a forward to a node fails, forwards to it fail at once for this
/// long (its sends are appended by the sender meanwhile).
const FORWARD_HOLD_OFF: Duration = Duration::from_secs(5);
/// Room left in a message for its headers (the JetStream message id).
const HEADER_ROOM: usize = 4096;
/// A floor for a broker that reports a tiny (or no) `max_payload`: packing
/// then still puts one envelope in each message.
const MIN_MESSAGE_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct BusOptions {
    pub stream: String,
    pub subject_prefix: String,
    /// Outbound queue bound (envelope copies, one per destination node).
    pub queue: usize,
    /// How long the broker waits for a node's ack before redelivering.
    pub ack_wait_ms: u64,
    /// How long the stream keeps envelopes.
    pub max_age_ms: u64,
    /// Copies of the stream kept by a NATS cluster (1 on a single server).
    pub replicas: usize,
    /// Fault injection for tests: this share of incoming envelopes is
    /// neither delivered nor acked, as if lost on the way.
    pub drop_inbound_percent: u8,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            stream: "TERN".into(),
            subject_prefix: "tern.node".into(),
            queue: 65536,
            ack_wait_ms: 2000,
            max_age_ms: 60000,
            replicas: 1,
            drop_inbound_percent: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> PlumbingError {
    PlumbingError::unavailable("nats", e)
}

/// The bus on JetStream; see the crate docs. Dropping it stops its tasks
/// (envelopes still queued are published first while NATS is up).
pub struct NatsBus {
    client: async_nats::Client,
    js: Context,
    opts: BusOptions,
    tx: mpsc::Sender<(NodeId, Bytes)>,
    /// Set on drop: background tasks stop retrying and consuming.
    shutdown: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    connects: watch::Sender<u64>,
    started: Mutex<Option<NodeId>>,
    serving: Mutex<Option<NodeId>>,
    /// Nodes whose last forward failed, and until when forwards to them
    /// fail at once (the sender then appends the message itself).
    unreachable: Mutex<HashMap<NodeId, Instant>>,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("stream", &self.opts.stream)
            .field("subject_prefix", &self.opts.subject_prefix)
            .field("node", &*self.started.lock())
            .finish()
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

/// Connects, makes sure the stream exists and starts the publishing task.
pub async fn connect(url: &str, opts: BusOptions) -> PlumbingResult<NatsBus> {
    NatsBus::connect(url, opts).await
}

fn stream_config(opts: &BusOptions) -> stream::Config {
    let max_age = Duration::from_millis(opts.max_age_ms);
    stream::Config {
        name: opts.stream.clone(),
        subjects: vec![format!("{}.*", opts.subject_prefix)],
        storage: StorageType::Memory,
        max_age,
        discard: DiscardPolicy::Old,
        num_replicas: opts.replicas.max(1),
        // Retried publishes carry the same message id; the broker drops
        // the copies it already stored within this window.
        duplicate_window: max_age.min(Duration::from_secs(120)),
        ..Default::default()
    }
}

async fn ensure_stream(js: &Context, opts: &BusOptions) -> PlumbingResult<stream::Stream> {
    match js.get_or_create_stream(stream_config(opts)).await {
        Ok(s) => Ok(s),
        Err(e) => {
            // Another node may have created it between our lookup and
            // create: look it up again before giving up.
            match js.get_stream(&opts.stream).await {
                Ok(s) => Ok(s),
                Err(_) => Err(unavailable(e)),
            }
        }
    }
}

impl NatsBus {
    /// `url` names one server or, comma separated, several servers of a
    /// NATS cluster (the client moves to another when one is lost).
    pub async fn connect(url: &str, opts: BusOptions) -> PlumbingResult<NatsBus> {
        let servers = url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        // Counts (re)connections: after one, the consumer checks that the
        // broker still has it (a restarted broker forgets it silently).
        let (connects, _) = watch::channel(0u64);
        let on_event = connects.clone();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CALL_TIMEOUT)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    on_event.send_modify(|n| *n += 1);
                }
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(unavailable)?;
        let js = jetstream::ContextBuilder::new()
            .timeout(CALL_TIMEOUT)
            .ack_timeout(CALL_TIMEOUT)
            .build(client.clone());
        ensure_stream(&js, &opts).await?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (stop, _) = watch::channel(false);
        tokio::spawn(
            Publisher {
                js: js.clone(),
                client: client.clone(),
                opts: opts.clone(),
                shutdown: shutdown.clone(),
                id_prefix: format!("{:016x}-", rand::random::<u64>()),
                seq: 0,
            }
            .run(rx),
        );
        Ok(NatsBus {
            client,
            connects,
            js,
            opts,
            tx,
            shutdown,
            stop,
            started: Mutex::new(None),
            serving: Mutex::new(None),
            unreachable: Mutex::new(HashMap::new()),
        })
    }

    /// The core NATS subject on which node `node` answers forwards (not in
    /// the stream: its subjects are one token after the prefix).
    fn forward_subject(&self, node: NodeId) -> String {
        format!("{}.fwd.{node}", self.opts.subject_prefix)
    }

    /// The underlying client (tests, metrics).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn start(&self, node: NodeId, inbound: Arc<dyn Inbound>) -> PlumbingResult<()> {
        {
            let mut started = self.started.lock();
            if let Some(n) = *started {
                return Err(unavailable(Msg(format!("bus already started as node {n}"))));
            }
            *started = Some(node);
        }
        let mut consumer = Consumer {
            js: self.js.clone(),
            opts: self.opts.clone(),
            node,
            name: format!("n{node}-{:08x}", rand::random::<u32>()),
            last_seq: 0,
            stream_created: None,
        };
        let messages = match consumer.open().await {
            Ok(m) => m,
            Err(e) => {
                *self.started.lock() = None;
                return Err(e);
            }
        };
        tokio::spawn(consumer.run(
            messages,
            inbound,
            self.stop.subscribe(),
            self.connects.subscribe(),
        ));
        Ok(())
    }

    fn publish(&self, to: &[NodeId], env: &Envelope) -> PlumbingResult<()> {
        if to.is_empty() {
            return Ok(());
        }
        let wire = env.encode();
        for node in to {
            self.tx
                .try_send((*node, wire.clone()))
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => PlumbingError::Full("bus"),
                    mpsc::error::TrySendError::Closed(_) => {
                        unavailable(Msg("bus publisher stopped".into()))
                    }
                })?;
        }
        Ok(())
    }

    /// The broker's `max_payload` (1 MiB by default), less room for the
    /// message id header.
    fn max_message_bytes(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM)
            .max(MIN_MESSAGE_BYTES)
    }

    async fn health(&self) -> PlumbingResult<()> {
        let state = self.client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Err(unavailable(Msg(format!("connection is {state:?}"))));
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.js.get_stream(&self.opts.stream)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn forwarding(&self) -> Option<&dyn Forwarding> {
        Some(self)
    }
}

/// Forwards are core NATS request/reply (see the crate's documentation).
#[async_trait]
impl Forwarding for NatsBus {
    async fn serve_forwards(
        &self,
        node: NodeId,
        handler: Arc<dyn ForwardHandler>,
    ) -> PlumbingResult<()> {
        {
            let mut serving = self.serving.lock();
            if let Some(n) = *serving {
                return Err(unavailable(Msg(format!(
                    "already serving forwards as node {n}"
                ))));
            }
            *serving = Some(node);
        }
        let subs = match self.client.subscribe(self.forward_subject(node)).await {
            Ok(s) => s,
            Err(e) => {
                *self.serving.lock() = None;
                return Err(unavailable(e));
            }
        };
        tokio::spawn(serve_forwards(
            self.client.clone(),
            subs,
            handler,
            self.stop.subscribe(),
        ));
        Ok(())
    }

    async fn forward(
        &self,
        to: NodeId,
        req: &Forward,
        timeout: Duration,
    ) -> PlumbingResult<ForwardAnswer> {
        // Cut off from NATS, a request would wait in the client's buffer
        // for the whole timeout: fail now, and the sender appends itself.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable(Msg("not connected to nats".into())));
        }
        let now = Instant::now();
        {
            let mut held = self.unreachable.lock();
            match held.get(&to) {
                Some(until) if *until > now => {
                    return Err(unavailable(Msg(format!(
                        "node {to} did not answer a recent forward"
                    ))));
                }
                Some(_) => {
                    held.remove(&to);
                }
                None => {}
            }
        }
        // Serializing a plain struct of strings cannot fail.
        let body = serde_json::to_vec(req).unwrap_or_default();
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        let answer = match self
            .client
            .send_request(self.forward_subject(to), request)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // One more wait would only repeat this one: sends to `to`
                // are appended here for a while, then `to` is tried again.
                self.unreachable
                    .lock()
                    .insert(to, Instant::now() + FORWARD_HOLD_OFF);
                return Err(unavailable(e));
            }
        };
        serde_json::from_slice(&answer.payload)
            .map_err(|_| PlumbingError::Malformed("bad forward answer"))
    }
}

/// Answers the forwards arriving on `subs`, each in a task of its own
/// (they queue in the pipeline, where they share transactions), until the
/// bus is dropped. The client subscribes again by itself after a reconnect.
async fn serve_forwards(
    client: async_nats::Client,
    mut subs: async_nats::Subscriber,
    handler: Arc<dyn ForwardHandler>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = subs.next() => m,
            _ = stop.changed() => None,
        };
        let Some(msg) = msg else {
            break;
        };
        let Some(reply) = msg.reply else {
            continue;
        };
        let client = client.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let answer = match serde_json::from_slice::<Forward>(&msg.payload) {
                Ok(req) => handler.handle(req).await,
                Err(e) => ForwardAnswer::Err {
                    code: "invalid".into(),
                    message: format!("malformed forward: {e}"),
                },
            };
            let body = serde_json::to_vec(&answer).unwrap_or_default();
            if let Err(e) = client.publish(reply, body.into()).await {
                // The sender times out and appends the message itself
                // (answered from dedup if it was stored here).
                tracing::debug!(error = %e, "forward answer not sent");
            }
        });
    }
    let _ = subs.unsubscribe().await;
}

type AckFuture =
    Pin<Box<dyn Future<Output = Result<PublishAck, jetstream::context::PublishError>> + Send>>;
