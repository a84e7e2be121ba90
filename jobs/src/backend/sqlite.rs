//! SQLite, embedded: one file, nothing to run. Table `jobs_queue` holds every job (its JSON
//! envelope, its queue, when it is next visible and how often it was delivered); claiming a job
//! pushes its `run_at` past the lease in one `UPDATE … RETURNING`, so a crashed process's jobs
//! come back by themselves and SQLite's single writer never hands one job to two claimers.
//! Dead letters live in `jobs_dead_letters`. WAL mode and a busy timeout let several processes
//! share the file.

use super::{Backend, Fetched, Lease, Outcome, Wait};
use crate::{DeadLetter, Error, JobId};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS jobs_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT NOT NULL,
    payload     TEXT,
    run_at      INTEGER NOT NULL,
    deliveries  INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queue_ready ON jobs_queue (queue, run_at, id);
CREATE TABLE IF NOT EXISTS jobs_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT NOT NULL,
    job_id      INTEGER NOT NULL,
    worker      TEXT,
    payload     TEXT,
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_dead_letters_queue ON jobs_dead_letters (queue, id);
";

/// How long a statement waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether SQLite said the file is locked (`SQLITE_BUSY` or one of its extended codes).
fn is_busy(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// Other processes sharing the file cannot notify this one: idle processors look this often.
const CROSS_PROCESS_POLL: Duration = Duration::from_millis(500);
/// Rows per multi-row insert (SQLite allows 32,766 bound values per statement).
const INSERT_CHUNK: usize = 1000;

/// A claimed row: id, queue, payload, deliveries, enqueued at (ms). The payload is read as bytes, so a body that is not valid UTF-8 (SQLite
/// stores whatever it is given) is a job to dead-letter rather than an error for the batch.
type ClaimedRow = (i64, String, Option<Vec<u8>>, i64, i64);

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
    /// Woken by every enqueue in this process.
    inserted: Arc<Notify>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn time(ms: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms)
}

impl SqliteBackend {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://jobs.db`.
    pub(crate) async fn connect(url: &str) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        // Some lock waits skip SQLite's busy handler (switching to WAL, recovering the WAL of a
        // process that was killed): opening is retried for as long as the busy timeout.
        let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match Self::open(options.clone()).await {
                Err(err) if is_busy(&err) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %err, "SQLite file busy while opening; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result => return result.map_err(Error::from),
            }
        }
    }

    async fn open(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self {
            pool,
            inserted: Arc::new(Notify::new()),
        })
    }

    async fn next_due(&self, queues: &[String]) -> Result<Option<i64>, Error> {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT min(run_at) FROM jobs_queue WHERE queue IN (");
        let mut list = query.separated(", ");
        for queue in queues {
            list.push_bind(queue);
        }
        query.push(")");
        Ok(query.build_query_scalar().fetch_one(&self.pool).await?)
    }
}

/// Inserts jobs on `conn`; returns their ids in order.
pub(crate) async fn insert_on(
    conn: &mut SqliteConnection,
    queue: &str,
    payloads: Vec<Value>,
    delay: Option<Duration>,
) -> Result<Vec<JobId>, Error> {
    let now = now_ms();
    let run_at = now.saturating_add(delay.map_or(0, ms));
    let mut ids = Vec::with_capacity(payloads.len());
    for chunk in payloads.chunks(INSERT_CHUNK) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO jobs_queue (queue, payload, run_at, enqueued_at) ",
        );
        query.push_values(chunk, |mut row, payload| {
            row.push_bind(queue)
                .push_bind(payload.to_string())
                .push_bind(run_at)
                .push_bind(now);
        });
        query.push(" RETURNING id");
        let chunk_ids: Vec<i64> = query.build_query_scalar().fetch_all(&mut *conn).await?;
        ids.extend(chunk_ids.into_iter().map(JobId::from));
    }
    Ok(ids)
}

impl Backend for SqliteBackend {
    fn prepare<'a>(&'a self, _queues: &'a [String]) -> BoxFuture<'a, Result<(), Error>> {
        // One table serves every queue; it was created at connect.
        Box::pin(async { Ok(()) })
    }

    fn push<'a>(
        &'a self,
        queue: &'a str,
        payloads: Vec<Value>,
        delay: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<JobId>, Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let ids = insert_on(&mut tx, queue, payloads, delay).await?;
            tx.commit().await?;
            self.inserted.notify_waiters();
            Ok(ids)
        })
    }

    fn fetch<'a>(
        &'a self,
        queues: &'a [String],
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let mut fetched = Vec::with_capacity(max);
            for queue in queues {
                let want = max - fetched.len();
                if want == 0 {
                    break;
                }
                let now = now_ms();
                let rows: Result<Vec<ClaimedRow>, _> = sqlx::query_as(
                    "UPDATE jobs_queue SET run_at = ?1, deliveries = deliveries + 1 \
                     WHERE id IN (SELECT id FROM jobs_queue WHERE queue = ?2 AND run_at <= ?3 \
                                  ORDER BY id LIMIT ?4) \
                     RETURNING id, queue, CAST(payload AS BLOB), deliveries, enqueued_at",
                )
                .bind(now.saturating_add(ms(lease)))
                .bind(queue)
                .bind(now)
                .bind(i64::try_from(want).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await;
                let rows = match rows {
                    Ok(rows) => rows,
                    // What earlier queues gave is claimed: run it rather than hide it for a lease.
                    Err(err) if !fetched.is_empty() => {
                        tracing::warn!(error = %err, queue = %queue, "fetching from this queue failed");
                        break;
                    }
                    Err(err) => return Err(err.into()),
                };
                let name: Arc<str> = Arc::from(queue.as_str());
                fetched.extend(rows.into_iter().map(
                    |(id, _, payload, deliveries, enqueued_at)| {
                        let size = payload.as_ref().map_or(0, Vec::len);
                        let payload = match payload {
                            None => Err("empty body (SQL NULL)".to_owned()),
                            Some(bytes) => serde_json::from_slice(&bytes)
                                .map_err(|err| format!("not JSON: {err}")),
                        };
                        Fetched {
                            lease: Lease {
                                queue: name.clone(),
                                id: JobId::from(id),
                                delivery: i32::try_from(deliveries).unwrap_or(i32::MAX),
                                raw: None,
                            },
                            payload,
                            size,
                            enqueued_at: time(enqueued_at),
                        }
                    },
                ));
            }
            Ok(fetched)
        })
    }

    fn idle<'a>(&'a self, wait: Wait<'a>) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let mut pause = wait.poll.min(CROSS_PROCESS_POLL);
            if let Some(due) = self.next_due(wait.queues).await? {
                let until = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
                pause = pause.min(Duration::from_millis(until));
            }
            tokio::select! {
                () = wait.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = wait.shutdown.cancelled() => {}
            }
            Ok(Vec::new())
        })
    }

    fn complete<'a>(&'a self, batch: &'a [(Lease, Outcome)]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let now = now_ms();
            // One transaction: one commit for the whole batch.
            let mut tx = self.pool.begin().await?;
            for (lease, outcome) in batch {
                let id = lease.id.as_i64().unwrap_or_default();
                let delivery = i64::from(lease.delivery);
                match outcome {
                    Outcome::Done => {
                        sqlx::query("DELETE FROM jobs_queue WHERE id = ?1 AND deliveries = ?2")
                            .bind(id)
                            .bind(delivery)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Outcome::Release => {
                        sqlx::query(
                            "UPDATE jobs_queue SET run_at = ?1 WHERE id = ?2 AND deliveries = ?3",
                        )
                        .bind(now)
                        .bind(id)
                        .bind(delivery)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Outcome::Retry {
                        delay,
                        retry_count,
                        error,
                    } => {
                        sqlx::query(
                            "UPDATE jobs_queue SET run_at = ?1, \
                               payload = json_set(payload, '$.retry_count', ?2, '$.error', ?3) \
                             WHERE id = ?4 AND deliveries = ?5",
                        )
                        .bind(now.saturating_add(ms(*delay)))
                        .bind(i64::from(*retry_count))
                        .bind(error)
                        .bind(id)
                        .bind(delivery)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Outcome::Dead {
                        error,
                        attempts,
                        worker,
                    } => {
                        let moved = sqlx::query(
                            "INSERT INTO jobs_dead_letters \
                               (queue, job_id, worker, payload, error, attempts, enqueued_at, failed_at) \
                             SELECT queue, id, ?1, payload, ?2, ?3, enqueued_at, ?4 FROM jobs_queue \
                             WHERE id = ?5 AND deliveries = ?6",
                        )
                        .bind(worker)
                        .bind(error)
                        .bind(i64::from(*attempts))
                        .bind(now)
                        .bind(id)
                        .bind(delivery)
                        .execute(&mut *tx)
                        .await?;
                        if moved.rows_affected() > 0 {
                            sqlx::query("DELETE FROM jobs_queue WHERE id = ?1")
                                .bind(id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn extend<'a>(
        &'a self,
        leases: &'a [Lease],
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if leases.is_empty() {
                return Ok(());
            }
            let until = now_ms().saturating_add(ms(lease));
            let mut tx = self.pool.begin().await?;
            for l in leases {
                sqlx::query("UPDATE jobs_queue SET run_at = ?1 WHERE id = ?2 AND deliveries = ?3")
                    .bind(until)
                    .bind(l.id.as_i64().unwrap_or_default())
                    .bind(i64::from(l.delivery))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn maintain(&self, _lease: Duration) -> BoxFuture<'_, Result<(), Error>> {
        // Expired claims need no sweep: a row is claimable again once its run_at has passed.
        Box::pin(async { Ok(()) })
    }

    fn listen(
        &self,
        _queues: Vec<String>,
        wake: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let inserted = self.inserted.clone();
        Box::pin(async move {
            loop {
                tokio::select! {
                    () = inserted.notified() => wake.notify_one(),
                    () = stop.cancelled() => return,
                }
            }
        })
    }

    fn dead_list<'a>(
        &'a self,
        queue: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            let rows: Vec<DeadRow> = sqlx::query_as(
                "SELECT id, queue, job_id, worker, CAST(payload AS BLOB) AS payload, error, attempts, \
                        enqueued_at, failed_at \
                 FROM jobs_dead_letters WHERE ?1 IS NULL OR queue = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .bind(queue)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(DeadRow::into_letter).collect())
        })
    }

    fn dead_retry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<JobId, Error>> {
        Box::pin(async move {
            let not_found = || Error::DeadLetterNotFound(id.to_owned());
            let key: i64 = id.parse().map_err(|_| not_found())?;
            let mut tx = self.pool.begin().await?;
            let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
                "DELETE FROM jobs_dead_letters WHERE id = ?1 RETURNING queue, CAST(payload AS BLOB)",
            )
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            let (queue, payload) = row.ok_or_else(not_found)?;
            let payload = crate::envelope::with_fresh_budget(payload.as_deref().map(stored_json));
            let ids = insert_on(&mut tx, &queue, vec![payload], None).await?;
            tx.commit().await?;
            self.inserted.notify_waiters();
            ids.into_iter().next().ok_or_else(not_found)
        })
    }

    fn dead_delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let not_found = || Error::DeadLetterNotFound(id.to_owned());
            let key: i64 = id.parse().map_err(|_| not_found())?;
            let deleted = sqlx::query("DELETE FROM jobs_dead_letters WHERE id = ?1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(not_found());
            }
            Ok(())
        })
    }
}

/// A stored body as JSON; one that is not JSON becomes a string of its (lossily decoded) text.
fn stored_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A row of `jobs_dead_letters`.
#[derive(sqlx::FromRow)]
struct DeadRow {
    id: i64,
    queue: String,
    job_id: i64,
    worker: Option<String>,
    payload: Option<Vec<u8>>,
    error: String,
    attempts: i64,
    enqueued_at: i64,
    failed_at: i64,
}

impl DeadRow {
    fn into_letter(self) -> DeadLetter {
        DeadLetter {
            id: self.id.to_string(),
            queue: self.queue,
            job_id: JobId::from(self.job_id),
            worker: self.worker,
            message: self.payload.as_deref().map(stored_json),
            error: self.error,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            enqueued_at: time(self.enqueued_at),
            failed_at: time(self.failed_at).unwrap_or_default(),
        }
    }
}

impl crate::EnqueueTx<crate::Sqlite> for &mut SqliteConnection {
    fn push_tx(
        self,
        queue: &str,
        payloads: Vec<Value>,
    ) -> impl std::future::Future<Output = Result<Vec<JobId>, Error>> + Send {
        insert_on(self, queue, payloads, None)
    }
}
