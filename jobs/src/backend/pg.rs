//! PostgreSQL through pgmq: queue `Q` is the pgmq queue `Q` (table `pgmq.q_Q`); a job is a pgmq
//! message whose body is the [`Envelope`](crate::Envelope); dead letters live in
//! `jobs.dead_letters`.

use super::{Backend, Fetched, Lease, Outcome, Wait};
use crate::{DeadLetter, Error, JobId};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use pgmq::PGMQueueExt;
use serde_json::Value;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A row of `pgmq.read`: id, delivery count, enqueue time, body.
type ReadRow = (i64, i32, DateTime<Utc>, Option<String>);

/// Serializes schema installs across processes (`pg_advisory_lock` key).
const INSTALL_LOCK: i64 = 0x6a6f_6273_0001;

const SCHEMA: &str = r#"
CREATE SCHEMA IF NOT EXISTS jobs;
CREATE TABLE IF NOT EXISTS jobs.dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       TEXT NOT NULL,
    job_id      BIGINT NOT NULL,
    worker      TEXT,
    message     JSONB,
    error       TEXT NOT NULL,
    attempts    INT NOT NULL,
    enqueued_at TIMESTAMPTZ NOT NULL,
    failed_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS dead_letters_queue_id ON jobs.dead_letters (queue, id);
CREATE OR REPLACE FUNCTION jobs.notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgmq.' || TG_TABLE_NAME || '.INSERT', NULL);
    RETURN NULL;
END
$$;
"#;

/// Connections of the processor's own pool: fetchers, completer, lease keeper, due-time reads.
const WORK_CONNECTIONS: u32 = 6;

pub(crate) struct PgBackend {
    /// The caller's pool: enqueues and dead letters, committed durably.
    pool: PgPool,
    /// Claims, acks, retries and lease extensions, committed with `synchronous_commit = off`.
    /// A server crash can lose only the last few hundred milliseconds of these, and losing one
    /// just makes its job visible again: a re-run, which at-least-once delivery allows anyway.
    /// It spares a WAL flush per fetch and per ack batch, the cost that bounds small batches.
    work: PgPool,
    pgmq: PGMQueueExt,
}

impl PgBackend {
    pub(crate) async fn new(pool: PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .options([("synchronous_commit", "off")]);
        let work = PgPoolOptions::new()
            .max_connections(WORK_CONNECTIONS)
            .acquire_timeout(crate::client::ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let pgmq = PGMQueueExt::new_with_pool(work.clone()).await;
        Self { pool, work, pgmq }
    }

    /// How long until the earliest job in `queues` that is not ready yet becomes ready.
    async fn next_due(&self, queues: &[String]) -> Result<Option<Duration>, Error> {
        if queues.is_empty() {
            return Ok(None);
        }
        let union = queues
            .iter()
            .map(|q| format!("SELECT min(vt) AS vt FROM {}", table(q)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let ms: Option<f64> = sqlx::query_scalar(&format!(
            "SELECT (extract(epoch FROM min(vt) - clock_timestamp()) * 1000)::float8 FROM ({union}) AS due"
        ))
        .fetch_one(&self.work)
        .await?;
        Ok(ms.map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)))
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn prepare_locked(
        &self,
        conn: &mut PgConnection,
        queues: &[String],
    ) -> Result<(), Error> {
        let extension: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq')")
                .fetch_one(&mut *conn)
                .await?;
        // Where pgmq is installed as an extension, its functions are there already.
        if !extension {
            self.pgmq.install_sql_from_embedded().await?;
        }
        conn.execute(SCHEMA).await?;
        for queue in queues {
            sqlx::query("SELECT pgmq.create($1)")
                .bind(queue)
                .execute(&mut *conn)
                .await?;
            // One NOTIFY per inserting statement (pgmq's own trigger updates a throttle row per
            // row, which serializes concurrent enqueuers); the channel is pgmq's.
            let has_trigger: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger \
                 WHERE tgname = 'jobs_notify_insert' AND tgrelid = $1::regclass)",
            )
            .bind(table(queue))
            .fetch_one(&mut *conn)
            .await?;
            if has_trigger {
                // Re-creating it would lock the table behind any open enqueue transaction.
                continue;
            }
            let trigger = format!(
                "CREATE OR REPLACE TRIGGER jobs_notify_insert AFTER INSERT ON {} \
                 FOR EACH STATEMENT EXECUTE FUNCTION jobs.notify_insert()",
                table(queue)
            );
            conn.execute(trigger.as_str()).await?;
        }
        Ok(())
    }
}

/// The pgmq table of a queue; names are checked to be `[a-z0-9_]{1,47}` before they get here.
fn table(queue: &str) -> String {
    format!("pgmq.q_{queue}")
}

pub(crate) fn channel(queue: &str) -> String {
    pgmq::pg_ext::queue_name_to_insert_notification_channel_name(queue)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) async fn send_on(
    conn: &mut PgConnection,
    queue: &str,
    payloads: Vec<Value>,
    delay: Option<Duration>,
) -> Result<Vec<JobId>, Error> {
    let delay_ms = delay.map_or(0.0, millis);
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT pgmq.send_batch($1::text, $2::jsonb[], clock_timestamp() + $3::float8 * interval '1 millisecond')",
    )
    .bind(queue)
    .bind(payloads)
    .bind(delay_ms)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids.into_iter().map(JobId::from).collect())
}

impl Backend for PgBackend {
    fn prepare<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(INSTALL_LOCK)
                .execute(&mut conn)
                .await?;
            let result = self.prepare_locked(&mut conn, queues).await;
            // Closing the session releases the lock even if the unlock fails.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(INSTALL_LOCK)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
            result
        })
    }

    fn push<'a>(
        &'a self,
        queue: &'a str,
        payloads: Vec<Value>,
        delay: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<JobId>, Error>> {
        Box::pin(async move {
            let ids: Vec<i64> = match delay {
                None => {
                    self.pgmq
                        .send_batch_with_cxn(queue, &payloads, &self.pool)
                        .await?
                }
                Some(_) => {
                    let mut conn = self.pool.acquire().await?;
                    return send_on(&mut conn, queue, payloads, delay).await;
                }
            };
            Ok(ids.into_iter().map(JobId::from).collect())
        })
    }

    fn fetch<'a>(
        &'a self,
        queues: &'a [String],
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let lease_secs = i32::try_from(lease.as_secs().max(1)).unwrap_or(i32::MAX);
            let mut fetched = Vec::with_capacity(max);
            for queue in queues {
                let want = max - fetched.len();
                if want == 0 {
                    break;
                }
                let want = i32::try_from(want).unwrap_or(i32::MAX);
                // pgmq.read itself, taking the body as optional text (what the jsonb wire format
                // sends anyway, and its size comes free): a NULL body is a job to dead-letter,
                // not an error that would hide the whole batch for a lease.
                let rows: Result<Vec<ReadRow>, _> = sqlx::query_as(
                    "SELECT msg_id, read_ct, enqueued_at, message::text FROM pgmq.read($1::text, $2::integer, $3::integer)",
                )
                .bind(queue)
                .bind(lease_secs)
                .bind(want)
                .fetch_all(&self.work)
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
                let queue: Arc<str> = Arc::from(queue.as_str());
                fetched.extend(
                    rows.into_iter()
                        .map(|(id, delivery, enqueued_at, message)| Fetched {
                            lease: Lease {
                                queue: queue.clone(),
                                id: JobId::from(id),
                                delivery,
                                raw: None,
                            },
                            size: message.as_ref().map_or(0, String::len),
                            payload: match message {
                                Some(text) => serde_json::from_str(&text)
                                    .map_err(|err| format!("not JSON: {err}")),
                                None => Err("empty body (SQL NULL)".to_owned()),
                            },
                            enqueued_at: Some(enqueued_at),
                        }),
                );
            }
            Ok(fetched)
        })
    }

    fn complete<'a>(&'a self, batch: &'a [(Lease, Outcome)]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut by_queue: BTreeMap<&str, Completions> = BTreeMap::new();
            for (lease, outcome) in batch {
                by_queue
                    .entry(&lease.queue)
                    .or_default()
                    .add(lease, outcome);
            }
            for (queue, completions) in by_queue {
                completions.apply(&self.work, &self.pool, queue).await?;
            }
            Ok(())
        })
    }

    fn extend<'a>(
        &'a self,
        leases: &'a [Lease],
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut by_queue: BTreeMap<&str, Keys> = BTreeMap::new();
            for l in leases {
                by_queue.entry(&l.queue).or_default().push(l);
            }
            for (queue, keys) in by_queue {
                sqlx::query(&format!(
                    "UPDATE {} q SET vt = clock_timestamp() + $3::float8 * interval '1 millisecond' \
                     FROM unnest($1::bigint[], $2::int[]) AS t(id, delivery) \
                     WHERE q.msg_id = t.id AND q.read_ct = t.delivery",
                    table(queue)
                ))
                .bind(&keys.ids)
                .bind(&keys.deliveries)
                .bind(millis(lease))
                .execute(&self.work)
                .await?;
            }
            Ok(())
        })
    }

    fn idle<'a>(&'a self, wait: Wait<'a>) -> BoxFuture<'a, Result<Vec<Fetched>, Error>> {
        Box::pin(async move {
            let mut pause = wait.poll;
            if let Some(due) = self.next_due(wait.queues).await? {
                pause = pause.min(due);
            }
            tokio::select! {
                () = wait.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = wait.shutdown.cancelled() => {}
            }
            Ok(Vec::new())
        })
    }

    fn maintain(&self, _lease: Duration) -> BoxFuture<'_, Result<(), Error>> {
        // Expired leases need no sweep: pgmq hands out a message again once its vt has passed.
        Box::pin(async { Ok(()) })
    }

    fn dead_list<'a>(
        &'a self,
        queue: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>> {
        Box::pin(async move {
            let rows: Vec<DeadRow> = sqlx::query_as(
                "SELECT id, queue, job_id, worker, message, error, attempts, enqueued_at, failed_at \
                 FROM jobs.dead_letters WHERE $1::text IS NULL OR queue = $1 ORDER BY id DESC LIMIT $2",
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
            let row: Option<(String, Option<Value>)> = sqlx::query_as(
                "DELETE FROM jobs.dead_letters WHERE id = $1 RETURNING queue, message",
            )
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            let (queue, message) = row.ok_or_else(not_found)?;
            let message = crate::envelope::with_fresh_budget(message);
            let ids = send_on(&mut tx, &queue, vec![message], None).await?;
            tx.commit().await?;
            ids.into_iter().next().ok_or_else(not_found)
        })
    }

    fn dead_delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let not_found = || Error::DeadLetterNotFound(id.to_owned());
            let key: i64 = id.parse().map_err(|_| not_found())?;
            let deleted = sqlx::query("DELETE FROM jobs.dead_letters WHERE id = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(not_found());
            }
            Ok(())
        })
    }

    fn listen(
        &self,
        queues: Vec<String>,
        wake: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let channels: Vec<String> = queues.iter().map(|q| channel(q)).collect();
            let mut listener: Option<PgListener> = None;
            while !stop.is_cancelled() {
                let Some(active) = listener.as_mut() else {
                    match PgListener::connect_with(&pool).await {
                        Ok(mut fresh) => {
                            match fresh.listen_all(channels.iter().map(String::as_str)).await {
                                Ok(()) => listener = Some(fresh),
                                Err(err) => {
                                    tracing::warn!(error = %err, "LISTEN failed; polling until it works")
                                }
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot open the LISTEN connection; polling until it works")
                        }
                    }
                    // Jobs may have arrived while not listening.
                    wake.notify_one();
                    if listener.is_none() {
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                };
                tokio::select! {
                    () = stop.cancelled() => {}
                    received = active.try_recv() => match received {
                        Ok(Some(_)) => wake.notify_one(),
                        // The connection dropped and sqlx reconnected: inserts may have been missed.
                        Ok(None) => wake.notify_one(),
                        Err(err) => {
                            tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
                            listener = None;
                        }
                    }
                }
            }
        })
    }
}

/// Ids and deliveries of leases, as parallel arrays for `unnest`.
#[derive(Default)]
struct Keys {
    ids: Vec<i64>,
    deliveries: Vec<i32>,
}

impl Keys {
    fn push(&mut self, lease: &Lease) {
        self.ids.push(lease.id.as_i64().unwrap_or_default());
        self.deliveries.push(lease.delivery);
    }
}

/// One queue's outcomes, grouped so that each kind is one statement.
#[derive(Default)]
struct Completions {
    done: Keys,
    release: Keys,
    retry: Keys,
    retry_delays: Vec<f64>,
    retry_counts: Vec<i32>,
    retry_errors: Vec<String>,
    dead: Keys,
    dead_errors: Vec<String>,
    dead_attempts: Vec<i32>,
    dead_workers: Vec<Option<String>>,
}

impl Completions {
    fn add(&mut self, lease: &Lease, outcome: &Outcome) {
        match outcome {
            Outcome::Done => self.done.push(lease),
            Outcome::Release => self.release.push(lease),
            Outcome::Retry {
                delay,
                retry_count,
                error,
            } => {
                self.retry.push(lease);
                self.retry_delays.push(millis(*delay));
                self.retry_counts
                    .push(i32::try_from(*retry_count).unwrap_or(i32::MAX));
                self.retry_errors.push(error.clone());
            }
            Outcome::Dead {
                error,
                attempts,
                worker,
            } => {
                self.dead.push(lease);
                self.dead_errors.push(error.clone());
                self.dead_attempts
                    .push(i32::try_from(*attempts).unwrap_or(i32::MAX));
                self.dead_workers.push(worker.clone());
            }
        }
    }

    /// Acks, retries and releases on `work`; dead-letter moves on the durable `pool`.
    async fn apply(self, work: &PgPool, pool: &PgPool, queue: &str) -> Result<(), Error> {
        let table = table(queue);
        if !self.done.ids.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {table} q USING unnest($1::bigint[], $2::int[]) AS t(id, delivery) \
                 WHERE q.msg_id = t.id AND q.read_ct = t.delivery"
            ))
            .bind(&self.done.ids)
            .bind(&self.done.deliveries)
            .execute(work)
            .await?;
        }
        if !self.release.ids.is_empty() {
            sqlx::query(&format!(
                "UPDATE {table} q SET vt = clock_timestamp() \
                 FROM unnest($1::bigint[], $2::int[]) AS t(id, delivery) \
                 WHERE q.msg_id = t.id AND q.read_ct = t.delivery"
            ))
            .bind(&self.release.ids)
            .bind(&self.release.deliveries)
            .execute(work)
            .await?;
        }
        if !self.retry.ids.is_empty() {
            sqlx::query(&format!(
                "UPDATE {table} q SET \
                   vt = clock_timestamp() + t.delay * interval '1 millisecond', \
                   message = q.message || jsonb_build_object('retry_count', t.retry_count, 'error', t.error) \
                 FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::int[], $5::text[]) \
                   AS t(id, delivery, delay, retry_count, error) \
                 WHERE q.msg_id = t.id AND q.read_ct = t.delivery"
            ))
            .bind(&self.retry.ids)
            .bind(&self.retry.deliveries)
            .bind(&self.retry_delays)
            .bind(&self.retry_counts)
            .bind(&self.retry_errors)
            .execute(work)
            .await?;
        }
        if !self.dead.ids.is_empty() {
            sqlx::query(&format!(
                "WITH moved AS ( \
                   DELETE FROM {table} q \
                   USING unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[]) \
                     AS t(id, delivery, error, attempts, worker) \
                   WHERE q.msg_id = t.id AND q.read_ct = t.delivery \
                   RETURNING q.msg_id, q.message, q.enqueued_at, t.error, t.attempts, t.worker) \
                 INSERT INTO jobs.dead_letters (queue, job_id, worker, message, error, attempts, enqueued_at) \
                 SELECT $6, msg_id, worker, message, error, attempts, enqueued_at FROM moved"
            ))
            .bind(&self.dead.ids)
            .bind(&self.dead.deliveries)
            .bind(&self.dead_errors)
            .bind(&self.dead_attempts)
            .bind(&self.dead_workers)
            .bind(queue)
            .execute(pool)
            .await?;
        }
        Ok(())
    }
}

impl crate::EnqueueTx<crate::Pg> for &mut PgConnection {
    fn push_tx(
        self,
        queue: &str,
        payloads: Vec<Value>,
    ) -> impl std::future::Future<Output = Result<Vec<JobId>, Error>> + Send {
        send_on(self, queue, payloads, None)
    }
}

/// A row of `jobs.dead_letters`.
#[derive(sqlx::FromRow)]
struct DeadRow {
    id: i64,
    queue: String,
    job_id: i64,
    worker: Option<String>,
    message: Option<Value>,
    error: String,
    attempts: i32,
    enqueued_at: DateTime<Utc>,
    failed_at: DateTime<Utc>,
}

impl DeadRow {
    fn into_letter(self) -> DeadLetter {
        DeadLetter {
            id: self.id.to_string(),
            queue: self.queue,
            job_id: JobId::from(self.job_id),
            worker: self.worker,
            message: self.message,
            error: self.error,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            enqueued_at: Some(self.enqueued_at),
            failed_at: self.failed_at,
        }
    }
}
