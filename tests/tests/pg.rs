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
use crash_worker::pg as scenarios;
mod crash;

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
