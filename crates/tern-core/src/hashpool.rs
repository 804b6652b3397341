//! Password hashing as a bounded resource. An argon2 hash takes its memory
//! cost (19 MiB by default) for as long as it runs; with no bound, a flood
//! of logins holds that much per concurrent request and the allocator keeps
//! it afterwards. The pool runs at most `workers` hashes at once, each on a
//! blocking thread with a work buffer taken from a free list (so the same
//! few buffers serve every login), lets at most `queue` more wait for a
//! turn, and refuses the rest at once ([`Busy`]): the caller answers 503
//! with `Retry-After` instead of holding the request.

use argon2::Block;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The pool is full: `workers` hashes run and `queue` wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

/// Why a pooled hash did not give an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The hashing thread panicked.
    #[error("password hashing failed")]
    Failed,
}

/// Work memory for one argon2 run: reused, grown on demand.
pub type WorkMemory = Vec<Block>;

#[derive(Debug)]
pub struct HashPool {
    permits: Arc<Semaphore>,
    workers: usize,
    /// Hashes running or waiting for a turn.
    admitted: Arc<AtomicUsize>,
    /// Most hashes running or waiting.
    limit: usize,
    /// Buffers of finished hashes, for the next ones (at most `workers`).
    free: Arc<Mutex<Vec<WorkMemory>>>,
}

/// Gives back a place in the pool's count when dropped, wherever that is
/// (the request's task if it gives up waiting, the hashing thread once it
/// ran).
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    /// `workers` hashes at once (0: one per CPU core), `queue` more waiting.
    pub fn new(workers: usize, queue: usize) -> HashPool {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        HashPool {
            permits: Arc::new(Semaphore::new(workers)),
            workers,
            admitted: Arc::new(AtomicUsize::new(0)),
            limit: workers.saturating_add(queue),
            free: Arc::new(Mutex::new(Vec::with_capacity(workers))),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Hashes running or waiting now.
    pub fn in_use(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Runs `f` on a blocking thread once a worker is free, with a reused
    /// work buffer. Refused at once with [`Busy`] when the queue is full.
    /// The worker's permit and buffer travel with the blocking job, so a
    /// caller that stops waiting (a timed-out request) cannot make more
    /// than `workers` hashes run at once.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WorkMemory) -> T + Send + 'static,
    {
        let n = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.admitted.clone());
        if n >= self.limit {
            return Err(Busy.into());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Failed)?;
        let free = self.free.clone();
        let workers = self.workers;
        tokio::task::spawn_blocking(move || {
            let mut mem = free.lock().pop().unwrap_or_default();
            let out = f(&mut mem);
            {
                let mut free = free.lock();
                if free.len() < workers {
                    free.push(mem);
                }
            }
            drop(permit);
            drop(admitted);
            out
        })
        .await
        .map_err(|_| PoolError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn bounded_runs_and_queue() {
        let pool = Arc::new(HashPool::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // The jobs hold their workers until every task has been admitted
        // or refused, so the outcome does not depend on timing.
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (pool, running, most, gate) =
                (pool.clone(), running.clone(), most.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move |mem| {
                    mem.resize(4, Block::default());
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let (open, cv) = &*gate;
                    let mut o = open.lock().unwrap();
                    while !*o {
                        o = cv.wait(o).unwrap();
                    }
                    drop(o);
                    std::thread::sleep(Duration::from_millis(10));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Five places (2 running, 3 waiting) taken; then let them run.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.in_use() < 5 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        let mut ok = 0;
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(PoolError::Busy(_)) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            (ok, busy),
            (5, 5),
            "2 running + 3 waiting, the rest refused"
        );
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than 2 at once");
        assert_eq!(pool.in_use(), 0);
        let free = pool.free.lock();
        assert!(
            free.len() <= 2 && free.iter().all(|m| m.len() == 4),
            "buffers kept for reuse"
        );
    }
}
