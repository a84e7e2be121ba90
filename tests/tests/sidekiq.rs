//! The Redis backend in Sidekiq's layout against a real server: the conformance suite, plus
//! reliable fetch, scheduling, fairness, draining and interoperability with Ruby's Sidekiq.

use jobs::{worker, BackendKind, Jobs, Pg, Sidekiq};
use jobs_tests::{eventually, record, runs, Probe, Running, Store};
use std::time::Duration;

type B = Sidekiq;
const KIND: BackendKind = BackendKind::Sidekiq;
const WAIT: Duration = Duration::from_secs(20);

fn builder() -> jobs::JobsBuilder {
    Jobs::builder()
        .redis(jobs_tests::redis_url())
        .postgres(jobs_tests::database_url())
}

mod conformance;

use conformance::{connect, fresh};

#[worker(enqueuer = Pg, queue = "t_moved", drain = Sidekiq)]
async fn moved(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_worker_that_moved_to_pg_still_drains_its_sidekiq_jobs() {
    let redis = fresh("t_moved").await;
    let pg = Store::of(BackendKind::Pg).await;
    pg.purge("t_moved").await;
    let jobs = connect("t_moved").await;
    // Left in Redis by the deploy before the move…
    redis
        .send_job(
            "t_moved",
            "Moved",
            serde_json::json!({"key": "moved", "n": 1}),
        )
        .await;
    // …and enqueued to Postgres since.
    Moved::enqueue(Probe::new("moved", 2)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async { runs("moved").len() == 2 }).await,
        "{:?}",
        runs("moved")
    );
    assert!(
        eventually(WAIT, || async {
            redis.pending("t_moved").await == 0 && pg.pending("t_moved").await == 0
        })
        .await
    );
    running.stop().await;
}
