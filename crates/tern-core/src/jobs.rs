//! PROTOCOL 5.6: the node's runner of durable jobs (webhook deliveries
//! first). A task per node and kind claims due jobs from the store
//! ([`Store::claim_jobs`]: in a cluster each job is taken by one node at a
//! time), runs them with bounded concurrency, and finishes them or retries
//! them with exponential backoff until the kind's maximum age. Woken on
//! enqueue and on a short poll; stops claiming on shutdown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Notify, Semaphore};

use crate::now_ms;
use crate::store::{Job, Store};

/// Runs one job of a kind. `Err` is retried later (with its text kept as
/// the job's `last_error`).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, job: &Job) -> Result<(), String>;
}

/// How a kind's jobs are run.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    /// Jobs of the kind running at once on this node.
    pub concurrency: usize,
    /// How long a claimed job is this node's; a job still running then may
    /// be taken by another node (longer than a run's own deadline).
    pub lease: Duration,
    /// How often the store is asked besides wake-ups.
    pub poll: Duration,
    /// The delay after the first failure; it doubles with each failure...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// A job that fails when it is older than this is given up (logged and
    /// counted).
    pub max_age: Duration,
}

/// The delay before attempt `attempts + 1`: `base * 2^(attempts - 1)`,
/// at most `max`.
pub fn backoff(policy: &JobPolicy, attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(30);
    policy
        .retry_base
        .saturating_mul(1u32 << shift)
        .min(policy.retry_max)
}

/// One kind's runner on this node.
pub struct JobRunner {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl JobRunner {
    pub fn start(
        store: Arc<dyn Store>,
        kind: &'static str,
        handler: Arc<dyn JobHandler>,
        policy: JobPolicy,
    ) -> JobRunner {
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_loop(
            store,
            kind,
            handler,
            policy,
            wake.clone(),
            stopped,
        ));
        JobRunner {
            wake,
            stop,
            done: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Jobs were enqueued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming and waits up to `bound` for the jobs in hand; those
    /// still running then are dropped (their claims end and they run
    /// again, here after a restart or on another node: at least once).
    pub async fn shutdown(&self, bound: Duration) {
        let _ = self.stop.send(true);
        if let Some(task) = self.done.lock().await.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(bound, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run_loop(
    store: Arc<dyn Store>,
    kind: &'static str,
    handler: Arc<dyn JobHandler>,
    policy: JobPolicy,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(policy.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let lease_ms = policy.lease.as_millis() as i64;
    let mut last_count = None::<tokio::time::Instant>;
    loop {
        if *stopped.borrow() {
            break;
        }
        while running.try_join_next().is_some() {}
        // Counted at most once per poll: the queue's gauge.
        if last_count.is_none_or(|t| t.elapsed() >= policy.poll) {
            last_count = Some(tokio::time::Instant::now());
            if let Ok(n) = store.count_jobs(kind).await {
                metrics::gauge!("tern_jobs_pending", "kind" => kind).set(n as f64);
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = running.join_next() => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let claimed = match store
            .claim_jobs(kind, now_ms(), lease_ms, free as u32)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(kind, error = %e, "claiming jobs failed");
                Vec::new()
            }
        };
        let full = claimed.len() >= free;
        for job in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (store, handler, policy) = (store.clone(), handler.clone(), policy.clone());
            running.spawn(async move {
                run_one(&*store, kind, &*handler, &policy, job).await;
                drop(permit);
            });
        }
        if full {
            // More may be due: go on once a slot frees.
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(policy.poll) => {}
            _ = stopped.changed() => {}
        }
    }
    // The jobs in hand finish (or the shutdown bound drops them).
    while running.join_next().await.is_some() {}
}

async fn run_one(
    store: &dyn Store,
    kind: &'static str,
    handler: &dyn JobHandler,
    policy: &JobPolicy,
    job: Job,
) {
    let outcome = handler.run(&job).await;
    let now = now_ms();
    let result = match outcome {
        Ok(()) => {
            metrics::counter!("tern_jobs_total", "kind" => kind, "result" => "ok").increment(1);
            // A job whose content was replaced while it ran (5.5 collapsed
            // pushes) stays, due now, for the newer content.
            store
                .complete_job(job.id, &job.payload, now)
                .await
                .map(|_| ())
        }
        Err(e) if now - job.created_at >= policy.max_age.as_millis() as i64 => {
            metrics::counter!("tern_jobs_total", "kind" => kind, "result" => "given_up")
                .increment(1);
            tracing::error!(
                kind,
                key = %job.key,
                attempts = job.attempts + 1,
                error = %e,
                "job given up after its maximum age"
            );
            store.finish_job(job.id).await
        }
        Err(e) => {
            metrics::counter!("tern_jobs_total", "kind" => kind, "result" => "failed").increment(1);
            let attempts = job.attempts + 1;
            let delay = backoff(policy, attempts);
            tracing::debug!(kind, key = %job.key, attempts, error = %e, "job failed; retrying");
            let mut text = e;
            text.truncate(text.floor_char_boundary(500));
            store
                .retry_job(job.id, now + delay.as_millis() as i64, attempts, &text)
                .await
        }
    };
    if let Err(e) = result {
        // The claim ends and the job runs again.
        tracing::warn!(kind, key = %job.key, error = %e, "recording a job's outcome failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = JobPolicy {
            concurrency: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            max_age: Duration::from_secs(86_400),
        };
        assert_eq!(backoff(&p, 1), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2), Duration::from_secs(2));
        assert_eq!(backoff(&p, 5), Duration::from_secs(16));
        assert_eq!(backoff(&p, 11), Duration::from_secs(600));
        assert_eq!(backoff(&p, 1000), Duration::from_secs(600));
    }
}
