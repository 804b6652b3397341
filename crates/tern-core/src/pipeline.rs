//! The append pipeline: every message of this node passes through here so
//! that (1) many sends share one storage transaction (group commit), and
//! (2) pushes leave in commit order, which keeps each conversation's pushes
//! in seq order on every device.
//!
//! Two tasks joined by a bounded channel: the committer takes a batch of
//! queued sends, stamps msg_id and ts, and stores the batch; the publisher
//! then encodes each new message once, hands it to the fan-out, and answers the
//! senders. While one batch is published the next is being stored.

use crate::error::{CoreError, CoreResult};
use crate::fanout::Fanout;
use crate::frame::{encode, encode_msg_push};
use crate::groups::{GroupView, Groups};
use crate::hub::Audience;
use crate::ids::IdGen;
use crate::integrations::{created_jobs, WebhookTarget};
use crate::notifications::message_job;
use crate::now_ms;
use crate::push::{Outbound, Push};
use crate::store::{
    Appended, MemberChange, NewMessage, Store, StoreError, StoredMessage, MENTION_ALL,
};
use crate::views::MemberViews;
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

// The large variant is the hot one (every message): boxing it would cost an
// allocation per message to save channel slot space.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AppendJob {
    One {
        msg: NewMessage,
        plan: PushPlan,
        reply: Reply,
    },
    /// One membership operation of one group (creation with its first
    /// members, members added): stored all or nothing, in one transaction
    /// ([`Store::append_unit`]), then published in order.
    Unit {
        msgs: Vec<(NewMessage, PushPlan)>,
        reply: UnitReply,
    },
}

type Reply = oneshot::Sender<CoreResult<Appended>>;
type UnitReply = oneshot::Sender<CoreResult<Vec<StoredMessage>>>;
type UnitMsgs = Vec<(StoredMessage, PushPlan, Option<MemberChange>)>;

/// What the committer hands the publisher, in commit order.
#[allow(clippy::large_enum_variant)]
enum Done {
    One {
        result: Appended,
        plan: PushPlan,
        change: Option<MemberChange>,
        reply: Reply,
    },
    Unit {
        msgs: UnitMsgs,
        reply: UnitReply,
    },
}

/// What the publisher needs to route group messages.
pub(crate) struct Publisher {
    pub fanout: Arc<Fanout>,
    pub store: Arc<dyn Store>,
    pub views: Arc<dyn MemberViews>,
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
        created: Vec<WebhookTarget>,
        push: bool,
    ) -> Pipeline {
        let publisher = Arc::new(publisher);
        // 5.6: the webhooks that want `message.created`.
        let created: Arc<[WebhookTarget]> = created
            .into_iter()
            .filter(|w| w.wants(crate::integrations::MESSAGE_CREATED))
            .collect();
        // One id generator for every lane: ids stay unique and increasing.
        let ids = Arc::new(parking_lot::Mutex::new(IdGen::resume(node_id, id_floor)));
        let senders: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(batch_max * 4);
                let (ctx, crx) = mpsc::channel::<Vec<Done>>(4);
                let store = publisher.store.clone();
                tokio::spawn(commit_loop(
                    store,
                    rx,
                    ctx,
                    ids.clone(),
                    batch_max,
                    created.clone(),
                    push,
                ));
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
            .send(AppendJob::One { msg, plan, reply })
            .await
            .map_err(|_| CoreError::unavailable())?;
        rx.await.map_err(|_| CoreError::unavailable())?
    }

    /// Appends one membership operation of one group as a unit: all of it
    /// in one transaction, or nothing; nothing of this node comes between
    /// its messages.
    pub async fn append_unit(
        &self,
        msgs: Vec<(NewMessage, PushPlan)>,
    ) -> CoreResult<Vec<StoredMessage>> {
        let Some((first, _)) = msgs.first() else {
            return Ok(Vec::new());
        };
        let lane = self.lane(&first.conv).clone();
        let (reply, rx) = oneshot::channel();
        lane.send(AppendJob::Unit { msgs, reply })
            .await
            .map_err(|_| CoreError::unavailable())?;
        rx.await.map_err(|_| CoreError::unavailable())?
    }
}

/// Ordinary messages of a batch waiting to be stored together.
#[derive(Default)]
struct Run {
    msgs: Vec<NewMessage>,
    jobs: Vec<(PushPlan, Option<MemberChange>, Reply)>,
}

impl Run {
    /// Stores the run in one call; its outcomes join `done` (or its senders
    /// get the error).
    async fn store(&mut self, store: &dyn Store, done: &mut Vec<Done>) {
        if self.msgs.is_empty() {
            return;
        }
        let msgs = std::mem::take(&mut self.msgs);
        let jobs = std::mem::take(&mut self.jobs);
        let started = Instant::now();
        let n = msgs.len();
        let result = store.append_messages(msgs).await;
        metrics::histogram!("tern_storage_seconds", "op" => "append")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("tern_append_batch_size").record(n as f64);
        match result {
            Ok(results) if results.len() == jobs.len() => {
                for (result, (plan, change, reply)) in results.into_iter().zip(jobs) {
                    done.push(Done::One {
                        result,
                        plan,
                        change,
                        reply,
                    });
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

async fn commit_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<AppendJob>,
    out: mpsc::Sender<Vec<Done>>,
    ids: Arc<parking_lot::Mutex<IdGen>>,
    batch_max: usize,
    created: Arc<[WebhookTarget]>,
    push: bool,
) {
    let mut batch: Vec<AppendJob> = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        let now = now_ms();
        {
            let mut ids = ids.lock();
            for job in batch.iter_mut() {
                let msgs: Vec<&mut NewMessage> = match job {
                    AppendJob::One { msg, .. } => vec![msg],
                    AppendJob::Unit { msgs, .. } => msgs.iter_mut().map(|(m, _)| m).collect(),
                };
                for m in msgs {
                    m.msg_id = ids.next(now);
                    m.ts = now;
                }
            }
        }
        // 5.6: a sent message's `message.created` webhook jobs go into its
        // own transaction (nothing is added without such a webhook).
        // 5.5: and its offline push job, when push is configured.
        if !created.is_empty() || push {
            for job in batch.iter_mut() {
                if let AppendJob::One { msg, .. } = job {
                    if msg.client_msg_id.is_some() {
                        msg.extras.jobs = created_jobs(&created, msg.msg_id, now);
                        if push {
                            msg.extras.jobs.push(message_job(msg.msg_id, now));
                        }
                    }
                }
            }
        }
        // Runs of ordinary messages are stored together; a unit is stored
        // on its own, between them, so that commit order is queue order.
        let mut done = Vec::with_capacity(batch.len());
        let mut run = Run::default();
        for job in batch.drain(..) {
            match job {
                AppendJob::One { msg, plan, reply } => {
                    run.jobs.push((plan, msg.change.clone(), reply));
                    run.msgs.push(msg);
                }
                AppendJob::Unit { msgs, reply } => {
                    run.store(&*store, &mut done).await;
                    let (news, plans): (Vec<NewMessage>, Vec<PushPlan>) = msgs.into_iter().unzip();
                    let changes: Vec<Option<MemberChange>> =
                        news.iter().map(|m| m.change.clone()).collect();
                    let started = Instant::now();
                    let result = store.append_unit(news).await;
                    metrics::histogram!("tern_storage_seconds", "op" => "append_unit")
                        .record(started.elapsed().as_secs_f64());
                    match result {
                        Ok(stored) if stored.len() == plans.len() => {
                            let msgs = stored
                                .into_iter()
                                .zip(plans)
                                .zip(changes)
                                .map(|((m, p), c)| (m, p, c))
                                .collect();
                            done.push(Done::Unit { msgs, reply });
                        }
                        Ok(_) => {
                            tracing::error!("store returned a short unit");
                            let _ = reply.send(Err(CoreError::unavailable()));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
        }
        run.store(&*store, &mut done).await;
        if !done.is_empty() && out.send(done).await.is_err() {
            return;
        }
    }
}

async fn publish_loop(p: Arc<Publisher>, mut rx: mpsc::Receiver<Vec<Done>>) {
    while let Some(done) = rx.recv().await {
        // Groups whose view was taken while publishing this batch (a
        // cluster node checks it against the store's version). The batch
        // was committed before the first check, so one check per group
        // holds for all of its messages (a group's owner commits many per
        // batch); a membership change in the batch drops the mark.
        let mut checked: Vec<Arc<str>> = Vec::new();
        for d in done {
            match d {
                Done::One {
                    result,
                    plan,
                    change,
                    reply,
                } => {
                    match &result {
                        Appended::New(m) => {
                            metrics::counter!("tern_messages_stored_total").increment(1);
                            let gid = match &plan {
                                PushPlan::Group { gid, .. } => Some(gid.clone()),
                                _ => None,
                            };
                            let seen = gid.as_ref().filter(|g| checked.contains(g));
                            let view = match (seen, &change) {
                                (Some(g), None) => p.groups.get(g),
                                _ => None,
                            };
                            p.publish(m, plan, change.as_ref(), view.as_ref()).await;
                            if let Some(g) = gid {
                                checked.retain(|c| *c != g);
                                if change.is_none() {
                                    checked.push(g);
                                }
                            }
                        }
                        Appended::Duplicate(_) => {}
                        Appended::Refused(r) => {
                            let _ = reply.send(Err(StoreError::from(*r).into()));
                            continue;
                        }
                    }
                    let _ = reply.send(Ok(result));
                }
                Done::Unit { msgs, reply } => {
                    metrics::counter!("tern_messages_stored_total").increment(msgs.len() as u64);
                    checked.clear();
                    let stored = p.publish_unit(msgs).await;
                    let _ = reply.send(Ok(stored));
                }
            }
        }
    }
}

/// Who gets a group push: the view's members, and a member removed by this
/// very message.
struct GroupAudience<'a> {
    view: &'a GroupView,
    also: Option<&'a Arc<str>>,
    /// 5.1: members pushed separately (those a read-diffused message
    /// mentions get the full message in the background too).
    skip: &'a [String],
}

impl GroupAudience<'_> {
    fn skips(&self, user: &str) -> bool {
        self.skip.iter().any(|s| s == user)
    }
}

impl Audience for GroupAudience<'_> {
    fn len(&self) -> usize {
        self.view.size() + usize::from(self.also.is_some())
    }

    fn contains(&self, user: &str) -> bool {
        if self.skips(user) {
            return false;
        }
        if self.also.is_some_and(|a| &**a == user) {
            return true;
        }
        self.view.is_member(user)
    }

    fn for_each_user(&self, f: &mut dyn FnMut(&Arc<str>)) {
        for m in self.view.members.iter() {
            if !self.skips(m) {
                f(m);
            }
        }
        if let Some(a) = self.also {
            f(a);
        }
    }
}

impl Publisher {
    /// Publishes a stored message. `unit_view`: the group's view to use as
    /// it is (cluster): after a whole unit, loaded once for it, or checked
    /// against the store already while publishing this batch.
    async fn publish(
        &self,
        m: &StoredMessage,
        plan: PushPlan,
        change: Option<&MemberChange>,
        unit_view: Option<&Arc<GroupView>>,
    ) {
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
                let view = match unit_view {
                    Some(v) => Some(v.clone()),
                    None => self.views.view(&gid, &m.from, change).await,
                };
                let Some(view) = view else {
                    return;
                };
                // The member removed gets the message that removes them.
                let removed: Option<Arc<str>> = match change {
                    Some(MemberChange::Leave(u)) if !view.is_member(u) => Some(u.as_str().into()),
                    _ => None,
                };
                let read_diffused = view.size() > self.write_limit;
                // 5.1: mentioned members get the full message even in the
                // background; `@all` mentions everyone.
                let mention_all = m.mentions.iter().any(|u| u == MENTION_ALL);
                let mut skip: &[String] = &[];
                if read_diffused && !mention_all && !m.mentions.is_empty() {
                    skip = &m.mentions;
                    let users: Vec<Arc<str>> = m
                        .mentions
                        .iter()
                        .filter(|u| view.is_member(u))
                        .map(|u| Arc::from(u.as_str()))
                        .collect();
                    if !users.is_empty() {
                        self.fanout.push(Push {
                            users,
                            except: except.clone(),
                            out: Outbound::Batched(frame.clone()),
                            inactive: None,
                        });
                    }
                }
                let audience = GroupAudience {
                    view: &view,
                    also: removed.as_ref(),
                    skip,
                };
                let (out, inactive) = if !read_diffused {
                    let out = Outbound::Msg {
                        conv: m.conv.as_str().into(),
                        seq: m.seq,
                        frame,
                    };
                    (out, None)
                } else {
                    // Read diffusion: untracked pushes that the writer may
                    // merge (storm control); background devices get a notice.
                    let notify = encode(&Notify {
                        ty: tag::Notify,
                        conv: Cow::Borrowed(&m.conv),
                        max_seq: m.seq,
                    });
                    let inactive = (!mention_all).then_some(Outbound::Batched(notify));
                    (Outbound::Batched(frame), inactive)
                };
                self.fanout.deliver_group(&audience, except, out, inactive);
                if let (Some(change), None) = (change, unit_view) {
                    self.views.pushed(&gid, change);
                }
            }
        }
    }

    /// Publishes a unit's messages in order and returns them. One node:
    /// the unit's membership changes update the cached view first (one
    /// chunk copied per join), then every message goes to the members as of
    /// the unit's end. A cluster node loads the view once,
    /// after the whole unit (the store has applied it), pushes every message
    /// of the unit to those members (as it did when each message reloaded
    /// the group after their shared commit), and tells other nodes once.
    async fn publish_unit(&self, msgs: UnitMsgs) -> Vec<StoredMessage> {
        let gid = msgs.iter().find_map(|(_, plan, _)| match plan {
            PushPlan::Group { gid, .. } => Some(gid.clone()),
            PushPlan::Users { .. } => None,
        });
        let loaded = match &gid {
            // A unit is stored all at once, so every message of it goes to
            // the members as of its end: the first members of a new group
            // get `group_created` and every `member_joined` of the unit,
            // not only those after their own.
            Some(gid) => {
                let of: Vec<(&str, Option<&MemberChange>)> = msgs
                    .iter()
                    .map(|(m, _, c)| (m.from.as_str(), c.as_ref()))
                    .collect();
                self.views.unit_view(gid, &of).await
            }
            None => None,
        };
        let mut out = Vec::with_capacity(msgs.len());
        let Some(loaded) = loaded else {
            for (m, plan, change) in msgs {
                self.publish(&m, plan, change.as_ref(), None).await;
                out.push(m);
            }
            return out;
        };
        for (m, plan, change) in msgs {
            self.publish(&m, plan, change.as_ref(), Some(&loaded)).await;
            out.push(m);
        }
        if let Some(gid) = gid {
            self.views.unit_pushed(&gid);
        }
        out
    }
}
