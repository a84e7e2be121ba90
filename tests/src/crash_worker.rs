//! The worker of the crash test, shared by the test and the child processor it kills: each run
//! counts itself in the Redis hash `jobs_test:crash:runs`, so runs in a killed process count too.

use jobs::{worker, Sidekiq};
use std::time::Duration;
use tokio::sync::OnceCell;

pub const RUNS: &str = "jobs_test:crash:runs";

static REDIS: OnceCell<redis::aio::MultiplexedConnection> = OnceCell::const_new();

#[worker(enqueuer = Sidekiq, queue = "t_crash", name = "CrashProbe")]
pub async fn crash_probe(n: u64) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let conn = REDIS
        .get_or_try_init(|| async {
            redis::Client::open(jobs_tests::redis_url())?
                .get_multiplexed_async_connection()
                .await
        })
        .await?;
    let _: i64 = redis::cmd("HINCRBY")
        .arg(RUNS)
        .arg(n)
        .arg(1)
        .query_async(&mut conn.clone())
        .await?;
    Ok(())
}
