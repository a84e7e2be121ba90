//! The workers of the crash tests, shared by the tests and the child processors they kill: each
//! run counts itself in a Redis hash, so runs in a killed process count too.

use jobs::{worker, Pg, Sidekiq, Sqlite};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Runs of the Redis backend's crash test, by job.
pub const RUNS: &str = "jobs_test:crash:runs";
/// Runs of the Postgres backend's crash test, by job.
pub const RUNS_PG: &str = "jobs_test:crash_pg:runs";
/// Runs of the SQLite backend's crash test, by job.
pub const RUNS_SQLITE: &str = "jobs_test:crash_sqlite:runs";

static REDIS: OnceCell<redis::aio::MultiplexedConnection> = OnceCell::const_new();

async fn count(key: &str, n: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let conn = REDIS
        .get_or_try_init(|| async {
            redis::Client::open(jobs_tests::redis_url())?
                .get_multiplexed_async_connection()
                .await
        })
        .await?;
    let _: i64 = redis::cmd("HINCRBY")
        .arg(key)
        .arg(n)
        .arg(1)
        .query_async(&mut conn.clone())
        .await?;
    Ok(())
}

#[worker(enqueuer = Sidekiq, queue = "t_crash", name = "CrashProbe")]
pub async fn crash_probe(n: u64) -> anyhow::Result<()> {
    count(RUNS, n).await
}

#[worker(enqueuer = Sqlite, queue = "t_crash_sqlite", name = "CrashProbeSqlite")]
pub async fn crash_probe_sqlite(n: u64) -> anyhow::Result<()> {
    count(RUNS_SQLITE, n).await
}

#[worker(enqueuer = Pg, queue = "t_crash_pg", name = "CrashProbePg")]
pub async fn crash_probe_pg(n: u64) -> anyhow::Result<()> {
    count(RUNS_PG, n).await
}
