//! The Postgres backend against a real server: the conformance suite, plus what only
//! Postgres has (transactional enqueue) and the startup checks.

use jobs::{worker, BackendKind, BoxError, JobContext, Jobs, Pg, PgProcessor, State, Worker};
use jobs_tests::{eventually, pool, queued, record, runs, Probe, Running};
use std::time::Duration;

type B = Pg;
const KIND: BackendKind = BackendKind::Pg;
const WAIT: Duration = Duration::from_secs(20);

fn builder() -> jobs::JobsBuilder {
    Jobs::builder().postgres(jobs_tests::database_url())
}

mod conformance;
#[path = "../src/crash_worker.rs"]
mod crash_worker;

use conformance::{connect, Config};

async fn fresh(queue: &str) -> sqlx::PgPool {
    let pool = pool().await;
    jobs_tests::purge(&pool, queue).await;
    pool
}

#[worker(enqueuer = Pg, queue = "t_tx")]
async fn tx_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_committed_transaction_enqueues_its_job() {
    let pool = fresh("t_tx").await;
    let jobs = connect("t_tx").await;
    let mut tx = pool.begin().await.unwrap();
    TxProbe::enqueue_tx(&mut *tx, Probe::new("tx", 5))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(queued(&pool, "t_tx").await, 1);
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("tx").is_empty() }).await);
    running.stop().await;
}

#[worker(enqueuer = Pg, queue = "t_rollback")]
async fn rollback_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_rolled_back_transaction_enqueues_nothing() {
    let pool = fresh("t_rollback").await;
    let _jobs = connect("t_rollback").await;
    let mut tx = pool.begin().await.unwrap();
    RollbackProbe::enqueue_tx(&mut *tx, Probe::new("rollback", 1))
        .await
        .unwrap();
    assert_eq!(
        queued(&pool, "t_rollback").await,
        0,
        "invisible before commit"
    );
    tx.rollback().await.unwrap();
    assert_eq!(queued(&pool, "t_rollback").await, 0);
}

#[derive(Clone)]
struct NeverProvided;

#[worker(enqueuer = Pg, queue = "t_needs_state")]
async fn needs_state(_p: Probe, State(_s): State<NeverProvided>) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test]
async fn connect_names_a_worker_whose_state_is_missing() {
    let err = Jobs::builder()
        .postgres(jobs_tests::database_url())
        .queues(["t_needs_state"])
        .connect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, jobs::Error::MissingState { .. }), "{text}");
    assert!(
        text.contains("NeedsState") && text.contains("NeverProvided"),
        "{text}"
    );
}

#[tokio::test]
async fn connect_names_a_worker_whose_backend_is_not_configured() {
    let err = Jobs::builder()
        .queues(["t_extract"])
        .state(Config {
            label: String::new(),
        })
        .connect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, jobs::Error::BackendNotConfigured { .. }),
        "{text}"
    );
    assert!(
        text.contains("Extracting") && text.contains(".postgres("),
        "{text}"
    );
}

#[tokio::test]
async fn an_invalid_queue_name_is_refused() {
    let err = Jobs::builder()
        .postgres(jobs_tests::database_url())
        .queues(["Bad-Name"])
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, jobs::Error::InvalidQueue(ref q) if q == "Bad-Name"),
        "{err}"
    );
}

struct HandWritten;

impl Worker for HandWritten {
    type Args = Probe;
    type Enqueuer = Pg;
    const NAME: &'static str = "HandWritten";
    const CONFIG: jobs::WorkerConfig = jobs::WorkerConfig::new("t_by_hand");

    async fn handle(p: Probe, ctx: JobContext) -> Result<(), BoxError> {
        record(&p.key, p.n, ctx.info().attempt);
        Ok(())
    }
}

#[tokio::test]
async fn a_hand_written_worker_runs_on_a_hand_built_processor() {
    let pool = fresh("t_by_hand").await;
    let jobs = connect("t_by_hand").await;
    jobs.enqueue::<HandWritten>(Probe::new("by-hand", 1))
        .await
        .unwrap();
    let processor = PgProcessor::builder(&jobs)
        .register::<HandWritten>()
        .concurrency(2)
        .build()
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(processor.run(shutdown.clone()));
    assert!(eventually(WAIT, || async { !runs("by-hand").is_empty() }).await);
    assert!(eventually(WAIT, || async { queued(&pool, "t_by_hand").await == 0 }).await);
    shutdown.cancel();
    handle.await.unwrap().unwrap();
    assert!(matches!(
        PgProcessor::builder(&jobs).build(),
        Err(jobs::Error::NoWorkers(_))
    ));
}

async fn crash_runs() -> std::collections::HashMap<u64, u64> {
    let mut conn = redis::Client::open(jobs_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("HGETALL")
        .arg(crash_worker::RUNS_PG)
        .query_async(&mut conn)
        .await
        .expect("HGETALL")
}

#[tokio::test]
async fn a_processor_killed_mid_batch_loses_nothing() {
    const JOBS: u64 = 2_000;
    let pool = fresh("t_crash_pg").await;
    let mut conn = redis::Client::open(jobs_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(crash_worker::RUNS_PG)
        .query_async(&mut conn)
        .await
        .unwrap();
    let jobs = conformance::connect_with("t_crash_pg", |b| {
        b.lease(Duration::from_secs(2)).concurrency(16)
    })
    .await;
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        crash_worker::CrashProbePg::enqueue_batch(chunk.iter().copied())
            .await
            .unwrap();
    }
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crash_processor"))
        .env("CRASH_BACKEND", "pg")
        .env("DATABASE_URL", jobs_tests::database_url())
        .env("REDIS_URL", jobs_tests::redis_url())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the child processor");
    assert!(eventually(WAIT, || async { crash_runs().await.len() >= 300 }).await);
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let at_kill = crash_runs().await.len() as u64;
    assert!(at_kill < JOBS, "killed mid-batch");
    // Its claimed jobs become visible again when their lease (2 s) ends.
    let running = Running::start(&jobs);
    assert!(
        eventually(Duration::from_secs(90), || async {
            crash_runs().await.len() as u64 == JOBS && queued(&pool, "t_crash_pg").await == 0
        })
        .await,
        "{} of {JOBS} completed",
        crash_runs().await.len()
    );
    running.stop().await;
    let duplicates: u64 = crash_runs().await.values().map(|n| n - 1).sum();
    eprintln!("killed after {at_kill} jobs; all {JOBS} completed; {duplicates} ran twice (run but not yet acked by the killed process)");
}
