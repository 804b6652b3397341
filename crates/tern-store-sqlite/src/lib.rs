//! Tern's embedded store: one SQLite database (`tern.db` in the data
//! directory) in WAL mode with `synchronous = FULL`.
//!
//! Writes go to one writer thread that owns the only writing connection.
//! It drains whatever jobs are queued (up to `max_batch`), runs them in one
//! `BEGIN IMMEDIATE` transaction and answers every job only after `COMMIT`
//! returned: many concurrent writes share one fsync (group commit). A
//! second thread checkpoints the log into the database file, so the writer
//! never waits for that copy. Most
//! jobs run inside their own savepoint, so a failing job rolls back alone.
//! The hot ones (message appends, acks), which fail only when SQLite itself
//! does, run without: a savepoint held over a large job makes every
//! statement in it pay for a growing statement journal. If such a job
//! fails, the whole batch is rolled back and every job in it fails. Reads run on a
//! small pool of read-only connections on the blocking thread pool; WAL lets
//! them proceed while the writer works.

mod ops;
mod revocations;
mod schema;
mod signing_keys;
mod store;

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;
use tern_core::store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "tern.db";

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read connections kept open.
    pub readers: usize,
    /// Most write jobs committed together.
    pub max_batch: usize,
    /// Write jobs that may wait for the writer; senders wait when full.
    pub queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            max_batch: 256,
            queue: 4096,
        }
    }
}

/// Runs inside the write transaction; returns what to do once the
/// transaction's fate is known, and whether the transaction must be rolled
/// back (a job without a savepoint failed midway).
type Job = Box<dyn FnOnce(&Connection) -> (Done, bool) + Send>;
/// Called with the outcome of `COMMIT`.
type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReadPool>,
}

struct ReadPool {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
}

impl ReadPool {
    fn take(&self) -> StoreResult<Connection> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        let c = Connection::open(&self.path).map_err(StoreError::backend)?;
        schema::configure(&c, true).map_err(StoreError::backend)?;
        Ok(c)
    }

    fn give(&self, c: Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < self.keep {
            idle.push(c);
        }
    }
}

/// A failed transaction, whose cause is shared by every job in it.
#[derive(Debug)]
struct CommitFailed(String);

impl std::fmt::Display for CommitFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "commit failed: {}", self.0)
    }
}

impl std::error::Error for CommitFailed {}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir`. Blocking: call it
    /// from a blocking context.
    pub fn open(dir: &Path, opts: SqliteOptions) -> StoreResult<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(StoreError::backend)?;
        schema::configure(&conn, false).map_err(StoreError::backend)?;
        if let Err(v) = schema::migrate(&conn).map_err(StoreError::backend)? {
            tracing::error!(
                found = v,
                supported = schema::VERSION,
                "database schema is newer than this binary"
            );
            return Err(StoreError::Invalid(
                "database schema is newer than this binary",
            ));
        }
        revocations::init(&conn).map_err(StoreError::backend)?;
        // Checkpoints run on a thread of their own: the writer only falls
        // back to one when the log has grown far past the usual size.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_FALLBACK_PAGES)
            .map_err(StoreError::backend)?;
        // After a burst, the log file shrinks back to this size once it
        // restarts.
        conn.pragma_update(None, "journal_size_limit", WAL_FALLBACK_PAGES * 4096)
            .map_err(StoreError::backend)?;
        let checkpoint_conn = Connection::open(&path).map_err(StoreError::backend)?;
        schema::configure(&checkpoint_conn, false).map_err(StoreError::backend)?;
        let (nudge, nudged) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("tern-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, nudged))
            .map_err(StoreError::backend)?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let max_batch = opts.max_batch.max(1);
        std::thread::Builder::new()
            .name("tern-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, max_batch, nudge))
            .map_err(StoreError::backend)?;
        let readers = Arc::new(ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
            keep: opts.readers.max(1),
        });
        Ok(SqliteStore {
            writer: tx,
            readers,
        })
    }

    /// Runs `f` in the next write transaction, in a savepoint of its own;
    /// answers after it committed.
    async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.submit(true, f).await
    }

    /// [`Self::write`] without a savepoint, for jobs that fail only when
    /// SQLite does: a failure rolls back the whole batch.
    async fn write_unguarded<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.submit(false, f).await
    }

    /// Runs `check` and then `f` in the next write transaction without a
    /// savepoint: `check` only reads, so its error fails this job alone;
    /// a failure of `f` (SQLite's own) rolls back the whole batch. For
    /// large jobs, which a savepoint would slow down statement by statement.
    async fn write_checked<R, C, F>(&self, check: C, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        C: FnOnce(&Connection) -> StoreResult<()> + Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.enqueue(move |conn| match check(conn) {
            // A failed check wrote nothing: this job fails alone.
            Err(e) => (Err(e), false),
            Ok(()) => {
                let r = f(conn);
                let poison = r.is_err();
                (r, poison)
            }
        })
        .await
    }

    async fn submit<R, F>(&self, guarded: bool, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        self.enqueue(move |conn| {
            if guarded {
                (run_in_savepoint(conn, f), false)
            } else {
                let r = f(conn);
                let poison = r.is_err();
                (r, poison)
            }
        })
        .await
    }

    /// Queues `run` on the writer thread and waits for its batch to commit.
    /// `run` answers the job's result and whether it poisons the batch (a
    /// failure that may have left writes behind: the batch rolls back).
    async fn enqueue<R, F>(&self, run: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> (StoreResult<R>, bool) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<R>>();
        let job: Job = Box::new(move |conn| {
            let (result, poison) = run(conn);
            let done: Done = Box::new(move |commit| {
                let out = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::backend(CommitFailed(e))),
                };
                let _ = tx.send(out);
            });
            (done, poison)
        });
        let gone = || StoreError::backend(CommitFailed("the writer thread is gone".into()));
        if self.writer.send(job).await.is_err() {
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Runs `f` on a read connection on the blocking pool.
    async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.give(conn);
            out
        })
        .await
        .map_err(StoreError::backend)?
    }
}

fn run_in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    conn.execute_batch("SAVEPOINT job")
        .map_err(StoreError::backend)?;
    let result = f(conn);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    if let Err(e) = conn.execute_batch(end) {
        return Err(StoreError::backend(e));
    }
    result
}

/// The writer checkpoints by itself only past this many log pages (64 MiB),
/// when the checkpoint thread cannot keep up.
const WAL_FALLBACK_PAGES: i64 = 16_384;
/// The checkpoint thread runs at most this often while writes go on.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Copies committed pages from the log into the database (a passive
/// checkpoint: it never blocks the writer or readers), at most every
/// [`CHECKPOINT_EVERY`] while commits keep coming, and not at all while
/// idle. Ends with the writer.
fn checkpoint_loop(conn: Connection, nudged: std::sync::mpsc::Receiver<()>) {
    while nudged.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_EVERY);
        while nudged.try_recv().is_ok() {}
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    nudge: std::sync::mpsc::SyncSender<()>,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    let mut done: Vec<Done> = Vec::with_capacity(max_batch);
    loop {
        if rx.blocking_recv().map(|j| jobs.push(j)).is_none() {
            break;
        }
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        tracing::trace!(jobs = jobs.len(), "write batch");
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "could not begin a write transaction");
            // Dropping a job that never ran closes its answer channel: its
            // caller reports a backend failure.
            jobs.clear();
            continue;
        }
        let mut poisoned = false;
        for job in jobs.drain(..) {
            let (d, poison) = job(&conn);
            done.push(d);
            poisoned |= poison;
        }
        let commit = if poisoned {
            tracing::error!("a write job failed without a savepoint: rolling back its batch");
            let _ = conn.execute_batch("ROLLBACK");
            Err("the batch was rolled back after a failed write".to_owned())
        } else {
            conn.execute_batch("COMMIT").map_err(|e| e.to_string())
        };
        if let (false, Err(e)) = (poisoned, &commit) {
            tracing::error!(error = %e, "write transaction failed to commit");
            let _ = conn.execute_batch("ROLLBACK");
        }
        if commit.is_ok() {
            // Full means a checkpoint is already due.
            let _ = nudge.try_send(());
        }
        for d in done.drain(..) {
            d(commit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::store::{Store, UserRecord};

    fn user(name: &str) -> UserRecord {
        UserRecord {
            user: name.into(),
            name: name.into(),
            password_hash: "x".into(),
            created_at: 1,
            bot: false,
        }
    }

    async fn open(dir: &Path) -> SqliteStore {
        let d = dir.to_owned();
        tokio::task::spawn_blocking(move || SqliteStore::open(&d, SqliteOptions::default()))
            .await
            .unwrap()
            .unwrap()
    }

    /// A job without a savepoint that fails after writing takes its whole
    /// batch down: nothing of it is committed, and the store goes on.
    #[tokio::test]
    async fn failed_unguarded_job_rolls_back_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let r: StoreResult<()> = s
            .write_unguarded(|c| {
                ops::create_user(c, &user("half"))?;
                Err(StoreError::Conflict)
            })
            .await;
        assert!(r.is_err());
        assert!(s.get_user("half").await.unwrap().is_none());
        s.create_user(user("after")).await.unwrap();
        assert!(s.get_user("after").await.unwrap().is_some());
    }

    /// A guarded job that fails rolls back alone.
    #[tokio::test]
    async fn failed_guarded_job_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let bad = s.write(|c| {
            ops::create_user(c, &user("half"))?;
            Err::<(), _>(StoreError::Conflict)
        });
        let good = s.create_user(user("whole"));
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        good.unwrap();
        assert!(s.get_user("half").await.unwrap().is_none());
        assert!(s.get_user("whole").await.unwrap().is_some());
    }

    /// Committed pages reach the database file without the writer's own
    /// (fallback) checkpoint: the checkpoint thread copies them.
    #[tokio::test]
    async fn checkpoint_thread_copies_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let db = dir.path().join(DB_FILE);
        let size = || std::fs::metadata(&db).unwrap().len();
        let before = size();
        for i in 0..200 {
            s.create_user(UserRecord {
                password_hash: "x".repeat(2000),
                ..user(&format!("u{i}"))
            })
            .await
            .unwrap();
        }
        // 200 rows of 2 KB: about 100 pages, far below the writer's
        // fallback of 16,384.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < before + 200 * 2000 {
            assert!(
                std::time::Instant::now() < deadline,
                "database file still {} bytes",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
