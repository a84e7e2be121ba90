//! The Postgres backend against a real server: enqueue variants, retries, panics, timeouts,
//! poison jobs, unknown workers, shutdown, leases and exactly-once processing.

use jobs::{worker, BoxError, JobContext, JobInfo, Jobs, Pg, PgProcessor, State, Worker};
use jobs_tests::{eventually, pool, purge, queued, record, runs, send_raw, Probe, Run, Running};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

async fn connect(queue: &str) -> Jobs {
    connect_with(queue, |b| b).await
}

async fn connect_with(
    queue: &str,
    configure: impl FnOnce(jobs::JobsBuilder) -> jobs::JobsBuilder,
) -> Jobs {
    let builder = Jobs::builder()
        .postgres(jobs_tests::database_url())
        .queues([queue])
        .state(Config {
            label: "configured".into(),
        })
        .poll_interval(Duration::from_millis(500));
    configure(builder).connect().await.expect("connect")
}

async fn fresh(queue: &str) -> sqlx::PgPool {
    let pool = pool().await;
    purge(&pool, queue).await;
    pool
}

async fn dead_letters(jobs: &Jobs, queue: &str) -> Vec<jobs::DeadLetter> {
    jobs.dead_letters()
        .unwrap()
        .list(Some(queue), 100)
        .await
        .unwrap()
}

#[derive(Clone)]
struct Config {
    label: String,
}

// ---- enqueue variants -----------------------------------------------------------------------

#[worker(enqueuer = Pg, queue = "t_enqueue")]
async fn enqueue_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn every_enqueue_variant_is_processed() {
    let pool = fresh("t_enqueue").await;
    let jobs = connect("t_enqueue").await;
    let key = "enqueue";
    let id = jobs
        .enqueue::<EnqueueProbe>(Probe::new(key, 1))
        .await
        .unwrap();
    assert!(id.as_i64().is_some());
    let ids = jobs
        .enqueue_batch::<EnqueueProbe>((2..=4).map(|n| Probe::new(key, n)))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let mut tx = pool.begin().await.unwrap();
    EnqueueProbe::enqueue_tx(&mut *tx, Probe::new(key, 5))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(queued(&pool, "t_enqueue").await, 5);

    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async { runs(key).len() == 5 }).await,
        "{:?}",
        runs(key)
    );
    running.stop().await;
    let mut seen: Vec<u64> = runs(key).iter().map(|r| r.n).collect();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        queued(&pool, "t_enqueue").await,
        0,
        "acked jobs are deleted"
    );
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

#[worker(enqueuer = Pg, queue = "t_delay")]
async fn delay_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_delayed_job_runs_after_its_delay_and_not_before() {
    let _pool = fresh("t_delay").await;
    let jobs = connect_with("t_delay", |b| b.poll_interval(Duration::from_secs(60))).await;
    let running = Running::start(&jobs);
    let start = Instant::now();
    DelayProbe::enqueue_in(Duration::from_millis(1500), Probe::new("delay", 1))
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { !runs("delay").is_empty() }).await);
    let waited = start.elapsed();
    running.stop().await;
    assert!(
        waited >= Duration::from_millis(1500),
        "ran after {waited:?}"
    );
    // Woken by the due time, not by the 60 s poll interval.
    assert!(waited < Duration::from_secs(10), "ran after {waited:?}");
}

#[worker(enqueuer = Pg, queue = "t_notify")]
async fn notify_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn an_idle_processor_is_woken_by_a_new_job() {
    let _pool = fresh("t_notify").await;
    let jobs = connect_with("t_notify", |b| b.poll_interval(Duration::from_secs(60))).await;
    let running = Running::start(&jobs);
    tokio::time::sleep(Duration::from_millis(300)).await; // let it go idle
    let start = Instant::now();
    NotifyProbe::enqueue(Probe::new("notify", 1)).await.unwrap();
    assert!(eventually(WAIT, || async { !runs("notify").is_empty() }).await);
    let latency = start.elapsed();
    running.stop().await;
    assert!(
        latency < Duration::from_secs(5),
        "woke after {latency:?}, not by NOTIFY"
    );
}

#[worker(enqueuer = Pg, queue = "t_foreign")]
async fn foreign_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_minimal_envelope_from_any_pgmq_client_is_a_job() {
    let pool = fresh("t_foreign").await;
    let jobs = connect("t_foreign").await;
    send_raw(
        &pool,
        "t_foreign",
        json!({"worker": "ForeignProbe", "args": {"key": "foreign", "n": 7}}),
    )
    .await;
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("foreign").is_empty() }).await);
    running.stop().await;
    assert_eq!(runs("foreign"), vec![Run { n: 7, attempt: 1 }]);
}

// ---- failures -------------------------------------------------------------------------------

#[worker(enqueuer = Pg, queue = "t_flaky", max_retries = 5, retry_delay = "20ms")]
async fn flaky(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt);
    anyhow::ensure!(info.attempt >= 3, "attempt {} fails", info.attempt);
    Ok(())
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    let pool = fresh("t_flaky").await;
    let jobs = connect("t_flaky").await;
    Flaky::enqueue(Probe::new("flaky", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("flaky").len() == 3 }).await);
    assert!(eventually(WAIT, || async { queued(&pool, "t_flaky").await == 0 }).await);
    running.stop().await;
    let attempts: Vec<u32> = runs("flaky").iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(dead_letters(&jobs, "t_flaky").await.is_empty());
}

#[derive(Debug, thiserror::Error)]
#[error("mailbox full")]
struct MailboxFull;

#[worker(enqueuer = Pg, queue = "t_doomed", max_retries = 2, retry_delay = "10ms")]
async fn doomed(p: Probe, info: JobInfo) -> Result<(), MailboxFull> {
    record(&p.key, p.n, info.attempt);
    if p.key == "doomed-revived" && info.attempt == 1 {
        return Ok(());
    }
    Err(MailboxFull)
}

#[tokio::test]
async fn exhausted_retries_end_as_a_dead_letter_that_can_be_retried() {
    let pool = fresh("t_doomed").await;
    let jobs = connect("t_doomed").await;
    Doomed::enqueue(Probe::new("doomed", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            dead_letters(&jobs, "t_doomed").await.len() == 1
        })
        .await
    );
    let attempts: Vec<u32> = runs("doomed").iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3], "max_retries = 2 means three runs");
    assert_eq!(queued(&pool, "t_doomed").await, 0);

    let letter = dead_letters(&jobs, "t_doomed").await.remove(0);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "mailbox full");
    assert_eq!(letter.worker.as_deref(), Some("Doomed"));
    let message = letter.message.clone().unwrap();
    assert_eq!(message["args"], json!({"key": "doomed", "n": 1}));

    // Re-enqueued with a fresh budget, as a job that now succeeds.
    sqlx::query("UPDATE jobs.dead_letters SET message = jsonb_set(message, '{args,key}', '\"doomed-revived\"') WHERE id = $1")
        .bind(letter.id)
        .execute(&pool)
        .await
        .unwrap();
    jobs.dead_letters().unwrap().retry(letter.id).await.unwrap();
    assert!(eventually(WAIT, || async { !runs("doomed-revived").is_empty() }).await);
    assert!(eventually(WAIT, || async { queued(&pool, "t_doomed").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("doomed-revived"), vec![Run { n: 1, attempt: 1 }]);
    assert!(dead_letters(&jobs, "t_doomed").await.is_empty());
    assert!(matches!(
        jobs.dead_letters().unwrap().retry(letter.id).await,
        Err(jobs::Error::DeadLetterNotFound(_))
    ));
}

#[worker(enqueuer = Pg, queue = "t_panic", max_retries = 3, retry_delay = "10ms")]
async fn panicky(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt);
    if info.attempt == 1 {
        panic!("boom on the first run");
    }
    Ok(())
}

#[tokio::test]
async fn a_panicking_job_is_retried_and_the_processor_survives() {
    let pool = fresh("t_panic").await;
    let jobs = connect("t_panic").await;
    Panicky::enqueue(Probe::new("panic", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("panic").len() == 2 }).await);
    assert!(eventually(WAIT, || async { queued(&pool, "t_panic").await == 0 }).await);
    running.stop().await;
    assert_eq!(
        runs("panic").iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[worker(enqueuer = Pg, queue = "t_panic_dead", max_retries = 0)]
async fn always_panics(_p: Probe) -> anyhow::Result<()> {
    panic!("always");
}

#[tokio::test]
async fn a_panic_message_is_kept_with_the_dead_letter() {
    let _pool = fresh("t_panic_dead").await;
    let jobs = connect("t_panic_dead").await;
    AlwaysPanics::enqueue(Probe::new("panic-dead", 1))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            dead_letters(&jobs, "t_panic_dead").await.len() == 1
        })
        .await
    );
    running.stop().await;
    let letter = dead_letters(&jobs, "t_panic_dead").await.remove(0);
    assert_eq!(letter.error, "panicked: always");
    assert_eq!(letter.attempts, 1);
}

#[worker(enqueuer = Pg, queue = "t_timeout", max_retries = 2, retry_delay = "10ms", timeout = "100ms")]
async fn slow_first(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt);
    if info.attempt == 1 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        record(&p.key, 999, info.attempt); // never reached: the run was cancelled
    }
    Ok(())
}

#[tokio::test]
async fn a_job_past_its_timeout_is_cancelled_and_retried() {
    let pool = fresh("t_timeout").await;
    let jobs = connect("t_timeout").await;
    SlowFirst::enqueue(Probe::new("timeout", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("timeout").len() == 2 }).await);
    assert!(eventually(WAIT, || async { queued(&pool, "t_timeout").await == 0 }).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    assert_eq!(
        runs("timeout"),
        vec![Run { n: 1, attempt: 1 }, Run { n: 1, attempt: 2 }]
    );
}

// ---- poison and unknown -----------------------------------------------------------------------

#[worker(enqueuer = Pg, queue = "t_poison")]
async fn poison_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn poison_envelopes_and_args_are_dead_lettered_at_once() {
    let pool = fresh("t_poison").await;
    let jobs = connect("t_poison").await;
    send_raw(&pool, "t_poison", json!("just a string")).await;
    sqlx::query("SELECT pgmq.send('t_poison', NULL::jsonb)")
        .execute(&pool)
        .await
        .unwrap();
    send_raw(&pool, "t_poison", json!({"args": {"n": 1}})).await;
    send_raw(&pool, "t_poison", json!({"worker": 42, "args": {}})).await;
    send_raw(
        &pool,
        "t_poison",
        json!({"worker": "PoisonProbe", "args": {"key": "poison", "n": "NaN"}}),
    )
    .await;
    send_raw(
        &pool,
        "t_poison",
        json!({"worker": "PoisonProbe", "args": {"key": "poison", "n": 1}}),
    )
    .await;
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            dead_letters(&jobs, "t_poison").await.len() == 5
        })
        .await
    );
    assert!(
        eventually(WAIT, || async { runs("poison").len() == 1 }).await,
        "the good job still runs"
    );
    assert!(eventually(WAIT, || async { queued(&pool, "t_poison").await == 0 }).await);
    running.stop().await;

    let letters = dead_letters(&jobs, "t_poison").await;
    for letter in &letters {
        assert_eq!(letter.attempts, 1, "no retries for {letter:?}");
    }
    let errors: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.starts_with("invalid job envelope"))
            .count(),
        4,
        "{errors:?}"
    );
    assert!(
        letters.iter().any(|l| l.message.is_none()),
        "a NULL body is kept as NULL"
    );
    let bad_args = letters
        .iter()
        .find(|l| l.error.starts_with("invalid args"))
        .expect("bad args letter");
    assert_eq!(bad_args.worker.as_deref(), Some("PoisonProbe"));
    assert_eq!(
        bad_args.message.as_ref().unwrap()["args"]["n"],
        json!("NaN")
    );
    assert!(
        letters
            .iter()
            .any(|l| l.message == Some(json!("just a string"))),
        "kept as stored"
    );
}

#[worker(enqueuer = Pg, queue = "t_unknown")]
async fn unknown_neighbour(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn an_unknown_worker_is_retried_then_dead_lettered() {
    let pool = fresh("t_unknown").await;
    let jobs = connect_with("t_unknown", |b| {
        b.unknown_worker_retries(2, Duration::from_millis(10))
    })
    .await;
    send_raw(
        &pool,
        "t_unknown",
        json!({"worker": "FromTheFuture", "args": {}}),
    )
    .await;
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            dead_letters(&jobs, "t_unknown").await.len() == 1
        })
        .await
    );
    running.stop().await;
    let letter = dead_letters(&jobs, "t_unknown").await.remove(0);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "unknown worker `FromTheFuture`");
    assert_eq!(
        letter.message.unwrap()["retry_count"],
        json!(2),
        "retries were recorded"
    );
}

// ---- shutdown and leases ------------------------------------------------------------------------

#[worker(enqueuer = Pg, queue = "t_shutdown")]
async fn sleeper(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn shutdown_waits_for_a_running_job_to_finish() {
    let pool = fresh("t_shutdown").await;
    let jobs = connect("t_shutdown").await;
    Sleeper::enqueue(Probe::new("shutdown-wait", 600))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("shutdown-wait").is_empty() }).await);
    running.stop().await;
    assert_eq!(
        runs("shutdown-wait").len(),
        2,
        "finished before run() returned"
    );
    assert_eq!(queued(&pool, "t_shutdown").await, 0, "and was acked");
}

#[worker(enqueuer = Pg, queue = "t_release")]
async fn long_sleeper(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn shutdown_releases_a_job_still_running_at_the_deadline() {
    let pool = fresh("t_release").await;
    let jobs = connect_with("t_release", |b| {
        b.shutdown_timeout(Duration::from_millis(200))
    })
    .await;
    LongSleeper::enqueue(Probe::new("release", 30_000))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("release").is_empty() }).await);
    let start = Instant::now();
    running.stop().await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(runs("release").len(), 1, "cancelled, not finished");
    let ready: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pgmq.q_t_release WHERE vt <= clock_timestamp()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        ready, 1,
        "released: ready again at once, not after its lease"
    );
}

#[worker(enqueuer = Pg, queue = "t_lease")]
async fn outlives_lease(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    Ok(())
}

#[tokio::test]
async fn a_job_longer_than_its_lease_is_not_handed_to_another_processor() {
    let pool = fresh("t_lease").await;
    let first = connect_with("t_lease", |b| b.lease(Duration::from_secs(1))).await;
    let second = connect_with("t_lease", |b| b.lease(Duration::from_secs(1))).await;
    OutlivesLease::enqueue(Probe::new("lease", 3_500))
        .await
        .unwrap();
    let a = Running::start(&first);
    let b = Running::start(&second);
    assert!(eventually(WAIT, || async { queued(&pool, "t_lease").await == 0 }).await);
    a.stop().await;
    b.stop().await;
    assert_eq!(runs("lease").len(), 1, "lease kept alive: run once");
}

// ---- scale --------------------------------------------------------------------------------------

#[worker(enqueuer = Pg, queue = "t_many")]
async fn counted(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn many_jobs_over_two_processors_run_exactly_once() {
    const JOBS: u64 = 3_000;
    let pool = fresh("t_many").await;
    let a = connect_with("t_many", |b| b.concurrency(16)).await;
    let b = connect_with("t_many", |b| b.concurrency(16)).await;
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        Counted::enqueue_batch(chunk.iter().map(|n| Probe::new("many", *n)))
            .await
            .unwrap();
    }
    let ra = Running::start(&a);
    let rb = Running::start(&b);
    assert!(
        eventually(Duration::from_secs(60), || async {
            queued(&pool, "t_many").await == 0
        })
        .await
    );
    ra.stop().await;
    rb.stop().await;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for run in runs("many") {
        *seen.entry(run.n).or_default() += 1;
    }
    assert_eq!(seen.len() as u64, JOBS);
    assert!(seen.values().all(|c| *c == 1), "some job ran twice");
}

// ---- extractors, startup checks, hand-written workers ----------------------------------------

#[worker(enqueuer = Pg, queue = "t_extract")]
async fn extracting(p: Probe, State(config): State<Config>, info: JobInfo) -> anyhow::Result<()> {
    anyhow::ensure!(config.label == "configured");
    anyhow::ensure!(info.queue == "t_extract" && info.worker == "Extracting");
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn state_and_job_info_reach_the_handler() {
    let pool = fresh("t_extract").await;
    let jobs = connect("t_extract").await;
    Extracting::enqueue(Probe::new("extract", 3)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("extract").is_empty() }).await);
    running.stop().await;
    assert_eq!(runs("extract"), vec![Run { n: 3, attempt: 1 }]);
    assert_eq!(queued(&pool, "t_extract").await, 0);
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
