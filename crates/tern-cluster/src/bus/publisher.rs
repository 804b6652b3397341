//! Publishing: the queue of envelopes for other nodes, published in order
//! with a window of acks in flight and retried until the broker has them.

use super::*;

struct Pending {
    subject: String,
    id: String,
    wire: Bytes,
}

/// Publishes queued envelopes in order with a window of acks in flight.
pub(super) struct Publisher {
    pub(super) js: Context,
    pub(super) client: async_nats::Client,
    pub(super) opts: BusOptions,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) id_prefix: String,
    pub(super) seq: u64,
}

impl Publisher {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(NodeId, Bytes)>) {
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
