//! The Redis issue's user contract, compiled and run as written in a separate crate.

use jobs::{worker, Jobs, Pg, Sidekiq};
use jobs_tests::{eventually, Store};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static REDIS_PINGS: AtomicU64 = AtomicU64::new(0);
static MOVED: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[worker(enqueuer = Sidekiq)]
pub async fn redis_ping(args: Ping) -> anyhow::Result<()> {
    REDIS_PINGS.fetch_add(args.n, Ordering::SeqCst);
    Ok(())
}

// This worker moved from Sidekiq to Pg: its jobs still waiting in Redis are processed too.
// Once Redis has none left, the user deletes `drain = Sidekiq`.
#[worker(enqueuer = Pg, drain = Sidekiq)]
pub async fn moved(args: Ping) -> anyhow::Result<()> {
    MOVED.fetch_add(args.n, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn the_redis_contract_compiles_and_runs_as_written() -> anyhow::Result<()> {
    let database_url = jobs_tests::database_url();
    let redis_url = jobs_tests::redis_url();
    let redis = Store::of(jobs::BackendKind::Sidekiq).await;
    redis.purge("default").await;
    Store::of(jobs::BackendKind::Pg)
        .await
        .purge("default")
        .await;

    let jobs = Jobs::builder()
        .postgres(database_url)
        .redis(redis_url)
        .connect()
        .await?;
    RedisPing::enqueue(Ping { n: 1 }).await?; // the same helpers as Pg
    RedisPing::enqueue_in(Duration::from_millis(100), Ping { n: 2 }).await?;
    RedisPing::enqueue_batch(vec![Ping { n: 3 }, Ping { n: 4 }]).await?;
    redis
        .send_job("default", "Moved", serde_json::json!({"n": 100}))
        .await; // left in Redis before the move
    Moved::enqueue(Ping { n: 10 }).await?;

    let shutdown = CancellationToken::new();
    let runner = jobs.clone();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { runner.run(token).await }); // Pg and Sidekiq processors
    let done = eventually(Duration::from_secs(20), || async {
        REDIS_PINGS.load(Ordering::SeqCst) == 10 && MOVED.load(Ordering::SeqCst) == 110
    })
    .await;
    shutdown.cancel();
    handle.await??;
    anyhow::ensure!(done, "redis pings {REDIS_PINGS:?}, moved {MOVED:?}");
    Ok(())
}
