//! Helpers shared by the integration tests: the database, a probe recorder, and waiting.

use jobs::Jobs;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The database the test command set up.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/jobs_test".to_owned())
}

/// A small pool for assertions against the tables.
pub async fn pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// The args of most test workers: which test, and which job of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Probe {
    pub key: String,
    pub n: u64,
}

impl Probe {
    pub fn new(key: &str, n: u64) -> Self {
        Self {
            key: key.to_owned(),
            n,
        }
    }
}

/// One run of a job, as a worker saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub n: u64,
    pub attempt: u32,
}

static RUNS: Mutex<Option<HashMap<String, Vec<Run>>>> = Mutex::new(None);

/// Records that a worker ran job `n` of test `key` on `attempt`.
pub fn record(key: &str, n: u64, attempt: u32) {
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default()
        .push(Run { n, attempt });
}

/// Every run recorded for test `key`.
pub fn runs(key: &str) -> Vec<Run> {
    let runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.as_ref()
        .and_then(|r| r.get(key).cloned())
        .unwrap_or_default()
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// A processor running in the background.
pub struct Running {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), jobs::Error>>,
}

impl Running {
    pub fn start(jobs: &Jobs) -> Self {
        let shutdown = CancellationToken::new();
        let runner = jobs.clone();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { runner.run(token).await });
        Self { shutdown, handle }
    }

    /// Cancels and waits for a clean exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("processor task panicked")
            .expect("processor returned an error");
    }
}

/// Removes what earlier runs left in `queue` and its dead letters.
pub async fn purge(pool: &PgPool, queue: &str) {
    // The queue may not exist yet on a fresh database.
    let _ = sqlx::query(&format!("DELETE FROM pgmq.q_{queue}"))
        .execute(pool)
        .await;
    let _ = sqlx::query("DELETE FROM jobs.dead_letters WHERE queue = $1")
        .bind(queue)
        .execute(pool)
        .await;
}

/// How many jobs sit in `queue`, ready or not.
pub async fn queued(pool: &PgPool, queue: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM pgmq.q_{queue}"))
        .fetch_one(pool)
        .await
        .expect("count queue")
}

/// Sends a raw JSON body to `queue`, as a client in another language would.
pub async fn send_raw(pool: &PgPool, queue: &str, body: serde_json::Value) -> i64 {
    sqlx::query_scalar("SELECT pgmq.send($1, $2)")
        .bind(queue)
        .bind(body)
        .fetch_one(pool)
        .await
        .expect("pgmq.send")
}
