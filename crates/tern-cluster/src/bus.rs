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
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tern_core::bus::{
    Bus, Envelope, Forward, ForwardAnswer, ForwardHandler, Forwarding, Inbound, PlumbingError,
    PlumbingResult,
};
use tern_core::NodeId;
use tokio::sync::{mpsc, watch};

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
    pub async fn connect(url: &str, opts: BusOptions) -> PlumbingResult<NatsBus> {
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
            .connect(url)
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
        // Serializing a plain struct of strings cannot fail.
        let body = serde_json::to_vec(req).unwrap_or_default();
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        let answer = self
            .client
            .send_request(self.forward_subject(to), request)
            .await
            .map_err(unavailable)?;
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

struct Pending {
    subject: String,
    id: String,
    wire: Bytes,
}

/// Publishes queued envelopes in order with a window of acks in flight.
struct Publisher {
    js: Context,
    client: async_nats::Client,
    opts: BusOptions,
    shutdown: Arc<AtomicBool>,
    id_prefix: String,
    seq: u64,
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<(NodeId, Bytes)>) {
        let mut inflight: VecDeque<(Pending, AckFuture)> = VecDeque::with_capacity(WINDOW);
        let mut open = true;
        loop {
            if !open && inflight.is_empty() {
                return;
            }
            tokio::select! {
                // Acks first: they free window slots and surface failures
                // before more is sent behind them.
                biased;
                ack = async {
                    match inflight.front_mut() {
                        Some((_, f)) => f.as_mut().await,
                        None => std::future::pending().await,
                    }
                }, if !inflight.is_empty() => {
                    if let Err(e) = ack {
                        tracing::warn!(error = %e, "bus publish failed; retrying in order");
                        // Everything in flight is sent again behind the failed
                        // one, in order; copies the broker already stored are
                        // dropped by message id.
                        let redo: Vec<Pending> = inflight.drain(..).map(|(p, _)| p).collect();
                        for p in redo {
                            if !self.publish_until_acked(&p).await {
                                return;
                            }
                        }
                    } else {
                        inflight.pop_front();
                    }
                }
                msg = rx.recv(), if open && inflight.len() < WINDOW => {
                    let Some((node, wire)) = msg else {
                        open = false;
                        continue;
                    };
                    self.seq += 1;
                    let p = Pending {
                        subject: format!("{}.{node}", self.opts.subject_prefix),
                        id: format!("{}{:x}", self.id_prefix, self.seq),
                        wire,
                    };
                    match self.send(&p).await {
                        Ok(f) => inflight.push_back((p, f)),
                        Err(e) if fatal(&e) => {
                            tracing::error!(error = %e, subject = %p.subject, "bus envelope refused; dropped");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "bus publish failed; retrying in order");
                            let mut redo: Vec<Pending> = inflight.drain(..).map(|(p, _)| p).collect();
                            redo.push(p);
                            for p in redo {
                                if !self.publish_until_acked(&p).await {
                                    return;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    async fn send(&self, p: &Pending) -> Result<AckFuture, jetstream::context::PublishError> {
        let msg = PublishMessage::build()
            .payload(p.wire.clone())
            .message_id(&p.id);
        let f = self.js.send_publish(p.subject.clone(), msg).await?;
        Ok(std::future::IntoFuture::into_future(f))
    }

    /// Publishes one envelope and waits for its ack, retrying with backoff
    /// while NATS is unreachable. False once the bus is dropped.
    async fn publish_until_acked(&self, p: &Pending) -> bool {
        let mut backoff = BACKOFF_MIN;
        let mut connected_failures = 0;
        loop {
            let r = match self.send(p).await {
                Ok(f) => f.await.map(|_| ()),
                Err(e) => Err(e),
            };
            let e = match r {
                Ok(()) => return true,
                Err(e) => e,
            };
            if fatal(&e) {
                tracing::error!(error = %e, subject = %p.subject, "bus envelope refused; dropped");
                return true;
            }
            if e.kind() == PublishErrorKind::StreamNotFound {
                // Someone deleted the stream: make it again.
                if let Err(e) = ensure_stream(&self.js, &self.opts).await {
                    tracing::warn!(error = %e, "bus stream missing and not recreated");
                }
            }
            let connected =
                self.client.connection_state() == async_nats::connection::State::Connected;
            if connected && e.kind() == PublishErrorKind::Other {
                connected_failures += 1;
                if connected_failures >= MAX_CONNECTED_ATTEMPTS {
                    tracing::error!(error = %e, subject = %p.subject, "bus publish keeps failing; envelope dropped");
                    return true;
                }
            }
            tracing::debug!(error = %e, subject = %p.subject, "bus publish retry");
            if self.shutdown.load(Ordering::Relaxed) {
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

fn fatal(e: &jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::MaxPayloadExceeded
}

type Messages = pull::Stream;

/// This node's consumer of its subject.
struct Consumer {
    js: Context,
    opts: BusOptions,
    node: NodeId,
    name: String,
    /// Stream sequence of the last envelope handled: a recreated consumer
    /// starts after it.
    last_seq: u64,
    /// When the stream the consumer reads was made (it may be made anew).
    stream_created: Option<i128>,
}

impl Consumer {
    async fn open(&mut self) -> PlumbingResult<Messages> {
        let stream = ensure_stream(&self.js, &self.opts).await?;
        let created = stream.cached_info().created.unix_timestamp_nanos();
        let config = pull::Config {
            name: Some(self.name.clone()),
            filter_subject: format!("{}.{}", self.opts.subject_prefix, self.node),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_millis(self.opts.ack_wait_ms),
            // A restarted node id does not replay the pushes of the
            // previous holder; a recreated consumer resumes after the
            // last envelope handled.
            deliver_policy: if self.stream_created.is_some_and(|c| c != created) {
                // The stream was made anew (a memory stream after a broker
                // restart): all it holds was published since.
                DeliverPolicy::All
            } else if self.last_seq == 0 {
                DeliverPolicy::New
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: self.last_seq + 1,
                }
            },
            inactive_threshold: INACTIVE_THRESHOLD,
            max_ack_pending: 20_000,
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await.map_err(unavailable)?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(unavailable)?;
        self.stream_created = Some(created);
        Ok(messages)
    }

    async fn run(
        mut self,
        mut messages: Messages,
        inbound: Arc<dyn Inbound>,
        mut stop: watch::Receiver<bool>,
        mut connects: watch::Receiver<u64>,
    ) {
        let drop_percent = u32::from(self.opts.drop_inbound_percent.min(100));
        connects.mark_unchanged();
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = stop.changed() => break,
                Ok(()) = connects.changed() => {
                    if !self.exists().await {
                        tracing::warn!(node = self.node, "bus consumer gone after reconnect; recreating");
                        match self.reopen(&mut stop).await {
                            Some(m) => messages = m,
                            None => break,
                        }
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(msg)) => {
                    if drop_percent > 0 && rand::random_range(0..100u32) < drop_percent {
                        // Simulated loss: the broker redelivers after ack_wait.
                        continue;
                    }
                    if let Ok(info) = msg.info() {
                        self.last_seq = info.stream_sequence;
                    }
                    match Envelope::decode(&msg.payload) {
                        Ok(env) => inbound.receive(env),
                        // Acked anyway: redelivery cannot fix it.
                        Err(e) => {
                            tracing::warn!(error = %e, node = self.node, "bus: malformed envelope dropped")
                        }
                    }
                    if let Err(e) = msg.ack().await {
                        tracing::debug!(error = %e, "bus ack failed; the envelope comes again");
                    }
                }
                Some(Err(e)) => {
                    use pull::MessagesErrorKind as K;
                    tracing::warn!(error = %e, node = self.node, "bus consumer error");
                    // After a broker restart or a long outage the consumer
                    // may be gone, whatever the error says.
                    let gone = matches!(e.kind(), K::ConsumerDeleted | K::NoResponders)
                        || !self.exists().await;
                    if gone {
                        match self.reopen(&mut stop).await {
                            Some(m) => messages = m,
                            None => break,
                        }
                    }
                }
                None => {
                    tracing::warn!(node = self.node, "bus consumer ended; recreating");
                    match self.reopen(&mut stop).await {
                        Some(m) => messages = m,
                        None => break,
                    }
                }
            }
        }
        // A clean stop removes the consumer now rather than after the
        // inactivity threshold.
        if let Ok(stream) = self.js.get_stream_no_info(&self.opts.stream).await {
            let _ = tokio::time::timeout(CALL_TIMEOUT, stream.delete_consumer(&self.name)).await;
        }
    }

    /// Whether the broker still has this consumer (true when unsure: a
    /// failed lookup says nothing while the connection is down).
    async fn exists(&self) -> bool {
        let Ok(stream) = self.js.get_stream_no_info(&self.opts.stream).await else {
            return true;
        };
        match tokio::time::timeout(CALL_TIMEOUT, stream.consumer_info(&self.name)).await {
            Ok(Err(e)) => {
                use async_nats::jetstream::context::ConsumerInfoErrorKind as K;
                let gone = matches!(e.kind(), K::NotFound | K::StreamNotFound);
                if !gone {
                    tracing::debug!(error = %e, "bus consumer lookup failed");
                }
                !gone
            }
            _ => true,
        }
    }

    /// Creates the consumer again, retrying with backoff; None once stopped.
    async fn reopen(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Messages> {
        let mut backoff = BACKOFF_MIN;
        loop {
            if *stop.borrow() {
                return None;
            }
            // A fresh name: the old consumer may linger until it expires.
            self.name = format!("n{}-{:08x}", self.node, rand::random::<u32>());
            match self.open().await {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, node = self.node, "bus consumer not recreated yet")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return None,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
