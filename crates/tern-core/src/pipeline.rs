//! The append pipeline: every message of this node passes through here so
//! that (1) many sends share one storage transaction (group commit), and
//! (2) pushes leave in commit order, which keeps each conversation's pushes
//! in seq order on every device.
//!
//! Two tasks joined by a bounded channel: the committer takes a batch of
//! queued sends, stamps msg_id and ts, and stores the batch; the publisher
//! then encodes each new message once, hands it to the fan-out, and answers the
//! senders. While one batch is published the next is being stored.

use crate::bus::Envelope;
use crate::error::{CoreError, CoreResult};
use crate::fanout::Fanout;
use crate::groups::{GroupView, Groups};
use crate::hub::{Outbound, Push};
use crate::ids::IdGen;
use crate::service::encode;
use crate::store::{Appended, MemberChange, NewMessage, Store, StoreError, StoredMessage};
use crate::{encode_msg_push, now_ms};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;
use tern_proto::wire::{tag, Notify};
use tokio::sync::{mpsc, oneshot};

/// Who gets the push of a stored message.
#[derive(Debug)]
pub enum PushPlan {
    /// These users' devices (1:1 messages).
    Users {
        users: Vec<Arc<str>>,
        except: Option<(Arc<str>, Arc<str>)>,
    },
    /// The group's members as of this message, resolved by the publisher.
    Group {
        gid: Arc<str>,
        except: Option<(Arc<str>, Arc<str>)>,
    },
}

pub(crate) struct AppendJob {
    pub msg: NewMessage,
    pub plan: PushPlan,
    pub reply: oneshot::Sender<CoreResult<Appended>>,
}

type Reply = oneshot::Sender<CoreResult<Appended>>;

struct Committed {
    results: Vec<Appended>,
    jobs: Vec<(PushPlan, Option<MemberChange>, Reply)>,
}

/// What the publisher needs to route group messages.
pub(crate) struct Publisher {
    pub fanout: Arc<Fanout>,
    pub store: Arc<dyn Store>,
    pub groups: Arc<Groups>,
    /// Groups up to this size are write-diffused: tracked pushes, inbox.
    pub write_limit: usize,
}

/// One or more lanes, each a committer and a publisher. A conversation
/// always goes through the same lane, so its messages are stored and
/// pushed in seq order; lanes commit concurrently, which pays when the
/// store is a server reached over the network (a transaction's round trips
/// leave it idle) and costs nothing with one lane (the embedded store's
/// single writer gains nothing from more).
#[derive(Clone)]
pub(crate) struct Pipeline {
    lanes: Arc<[mpsc::Sender<AppendJob>]>,
}

impl Pipeline {
    /// `id_floor`: the highest id stored with this node's bits; every id
    /// issued is above it.
    pub fn start(
        publisher: Publisher,
        node_id: u16,
        id_floor: u64,
        batch_max: usize,
        lanes: usize,
    ) -> Pipeline {
        let publisher = Arc::new(publisher);
        // One id generator for every lane: ids stay unique and increasing.
        let ids = Arc::new(parking_lot::Mutex::new(IdGen::resume(node_id, id_floor)));
        let senders: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(batch_max * 4);
                let (ctx, crx) = mpsc::channel(4);
                let store = publisher.store.clone();
                tokio::spawn(commit_loop(store, rx, ctx, ids.clone(), batch_max));
                tokio::spawn(publish_loop(publisher.clone(), crx));
                tx
            })
            .collect();
        Pipeline {
            lanes: senders.into(),
        }
    }

    fn lane(&self, conv: &str) -> &mpsc::Sender<AppendJob> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let n = self.lanes.len();
        if n == 1 {
            return &self.lanes[0];
        }
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(conv);
        &self.lanes[(h % n as u64) as usize]
    }

    pub async fn append(&self, msg: NewMessage, plan: PushPlan) -> CoreResult<Appended> {
        let (reply, rx) = oneshot::channel();
        self.lane(&msg.conv)
            .send(AppendJob { msg, plan, reply })
            .await
            .map_err(|_| CoreError::unavailable())?;
        rx.await.map_err(|_| CoreError::unavailable())?
    }

    /// Appends several messages back to back: queued in order, so nothing
    /// of this node comes between them.
    pub async fn append_all(&self, jobs: Vec<(NewMessage, PushPlan)>) -> CoreResult<Vec<Appended>> {
        let mut waits = Vec::with_capacity(jobs.len());
        for (msg, plan) in jobs {
            let (reply, rx) = oneshot::channel();
            self.lane(&msg.conv)
                .send(AppendJob { msg, plan, reply })
                .await
                .map_err(|_| CoreError::unavailable())?;
            waits.push(rx);
        }
        let mut out = Vec::with_capacity(waits.len());
        for rx in waits {
            out.push(rx.await.map_err(|_| CoreError::unavailable())??);
        }
        Ok(out)
    }
}

async fn commit_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<AppendJob>,
    out: mpsc::Sender<Committed>,
    ids: Arc<parking_lot::Mutex<IdGen>>,
    batch_max: usize,
) {
    let mut batch: Vec<AppendJob> = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let now = now_ms();
        let mut msgs = Vec::with_capacity(batch.len());
        let mut jobs = Vec::with_capacity(batch.len());
        {
            let mut ids = ids.lock();
            for mut job in batch.drain(..) {
                job.msg.msg_id = ids.next(now);
                job.msg.ts = now;
                let change = job.msg.change.clone();
                msgs.push(job.msg);
                jobs.push((job.plan, change, job.reply));
            }
        }
        let started = Instant::now();
        let n = msgs.len();
        let result = store.append_messages(msgs).await;
        metrics::histogram!("tern_storage_seconds", "op" => "append")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("tern_append_batch_size").record(n as f64);
        match result {
            Ok(results) if results.len() == jobs.len() => {
                if out.send(Committed { results, jobs }).await.is_err() {
                    return;
                }
            }
            Ok(results) => {
                tracing::error!(
                    expected = jobs.len(),
                    got = results.len(),
                    "store returned a short batch"
                );
                for (_, _, reply) in jobs {
                    let _ = reply.send(Err(CoreError::unavailable()));
                }
            }
            Err(e) => {
                let e = CoreError::from(e);
                for (_, _, reply) in jobs {
                    let _ = reply.send(Err(CoreError::new(e.code, e.message.clone())));
                }
            }
        }
    }
}

async fn publish_loop(p: Arc<Publisher>, mut rx: mpsc::Receiver<Committed>) {
    while let Some(Committed { results, jobs }) = rx.recv().await {
        for (result, (plan, change, reply)) in results.into_iter().zip(jobs) {
            match &result {
                Appended::New(m) => {
                    metrics::counter!("tern_messages_stored_total").increment(1);
                    p.publish(m, plan, change.as_ref()).await;
                }
                Appended::Duplicate(_) => {}
                Appended::Refused(r) => {
                    let _ = reply.send(Err(StoreError::from(*r).into()));
                    continue;
                }
            }
            let _ = reply.send(Ok(result));
        }
    }
}

impl Publisher {
    async fn publish(&self, m: &StoredMessage, plan: PushPlan, change: Option<&MemberChange>) {
        // Encoded once; every recipient's queue shares these bytes.
        let frame = encode_msg_push(m);
        match plan {
            PushPlan::Users { users, except } => {
                if users.is_empty() {
                    return;
                }
                let out = Outbound::Msg {
                    conv: m.conv.as_str().into(),
                    seq: m.seq,
                    frame,
                };
                self.fanout.push(Push {
                    users,
                    except,
                    out,
                    inactive: None,
                });
            }
            PushPlan::Group { gid, except } => {
                let view = if self.fanout.is_cluster() {
                    self.cluster_view(&gid, change).await
                } else {
                    self.view(&gid, &m.from, change).await
                };
                let Some(view) = view else {
                    return;
                };
                let mut users = view.members.to_vec();
                if let Some(MemberChange::Leave(u)) = change {
                    // The member removed gets the message that removes them.
                    if !view.is_member(u) {
                        users.push(u.as_str().into());
                    }
                }
                let push = if view.size() <= self.write_limit {
                    let out = Outbound::Msg {
                        conv: m.conv.as_str().into(),
                        seq: m.seq,
                        frame,
                    };
                    Push {
                        users,
                        except,
                        out,
                        inactive: None,
                    }
                } else {
                    // Read diffusion: untracked pushes that the writer may
                    // merge (storm control); background devices get a notice.
                    let notify = encode(&Notify {
                        ty: tag::Notify,
                        conv: Cow::Borrowed(&m.conv),
                        max_seq: m.seq,
                    });
                    Push {
                        users,
                        except,
                        out: Outbound::Batched(frame),
                        inactive: Some(Outbound::Batched(notify)),
                    }
                };
                self.fanout.push(push);
                if change.is_some() {
                    if self.fanout.is_cluster() {
                        self.fanout
                            .to_others(&Envelope::GroupChanged { gid: gid.clone() });
                    } else {
                        self.groups.after_push(&gid, change);
                    }
                }
            }
        }
    }

    /// A cluster node's view of the group as of (at least) this message:
    /// other nodes change memberships too, so the cached view is used only
    /// while its version is the store's, and membership changes always
    /// reload it (the store has applied them by now).
    async fn cluster_view(
        &self,
        gid: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>> {
        let cached = self.groups.get(gid);
        if let (Some(v), None) = (&cached, change) {
            match self.store.group_version(gid).await {
                Ok(Some(ver)) if ver == v.version => return cached,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, gid, "cannot check group version");
                    return cached;
                }
            }
        }
        let loaded = async {
            let version = self.store.group_version(gid).await?;
            let rec = self.store.get_group(gid).await?;
            Ok::<_, StoreError>(rec.map(|r| (r, version.unwrap_or(0))))
        };
        match loaded.await {
            Ok(Some((rec, version))) => {
                let mut view = GroupView::from_record(&rec);
                view.version = version;
                Some(self.groups.insert(view))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, gid, "cannot load group for push");
                cached
            }
        }
    }

    async fn view(
        &self,
        gid: &str,
        from: &str,
        change: Option<&MemberChange>,
    ) -> Option<Arc<GroupView>> {
        if self.groups.get(gid).is_none() && !matches!(change, Some(MemberChange::Create { .. })) {
            match self.store.get_group(gid).await {
                Ok(Some(rec)) => {
                    self.groups.insert(GroupView::from_record(&rec));
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, gid, "cannot load group for push");
                    return None;
                }
            }
        }
        self.groups.before_push(gid, from, change)
    }
}
