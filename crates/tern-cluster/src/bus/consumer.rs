//! Receiving: this node's pull consumer on its subject, handing each
//! envelope to the node's inbound side and acking it after.

use super::*;

type Messages = pull::Stream;

/// This node's consumer of its subject.
pub(super) struct Consumer {
    pub(super) js: Context,
    pub(super) opts: BusOptions,
    pub(super) node: NodeId,
    pub(super) name: String,
    /// Stream sequence of the last envelope handled: a recreated consumer
    /// starts after it.
    pub(super) last_seq: u64,
    /// When the stream the consumer reads was made (it may be made anew).
    pub(super) stream_created: Option<i128>,
}

impl Consumer {
    pub(super) async fn open(&mut self) -> PlumbingResult<Messages> {
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
        let messages = pull_from(&consumer).await?;
        if self.last_seq == 0 {
            // Later consumers resume from here, not from "new" then.
            self.last_seq = stream.cached_info().state.last_sequence;
        }
        self.stream_created = Some(created);
        Ok(messages)
    }

    pub(super) async fn run(
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
                    // The pull stream asks again by itself after a
                    // reconnect; a restarted broker may have forgotten the
                    // consumer. (One lost with a NATS cluster member shows
                    // as a missed heartbeat below.)
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
                    tracing::warn!(error = %e, node = self.node, "bus consumer error; recreating");
                    // Whatever the error says (consumer deleted, no
                    // responders, a missed heartbeat, a failed pull), the
                    // consumer may be gone or wait for a pull request no
                    // server holds any more: pull from a new one.
                    match self.reopen(&mut stop).await {
                        Some(m) => messages = m,
                        None => break,
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

    /// Creates a new consumer that starts after the last envelope handled,
    /// retrying with backoff; None once stopped. After an error or a
    /// silent pull the old one may sit on a lost NATS server (lookups then
    /// time out rather than say it is gone); a new one costs one API call,
    /// and the old one expires when idle.
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

/// A pull stream on `consumer` with this crate's batch, heartbeat and expiry.
async fn pull_from(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
) -> PlumbingResult<Messages> {
    consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .heartbeat(PULL_HEARTBEAT)
        .expires(PULL_EXPIRES)
        .messages()
        .await
        .map_err(unavailable)
}
