//! The conformance suite: the same behaviour proven on every backend. A backend's test file
//! declares `type B` (its enqueuer), `KIND` and `builder()`, then `mod conformance;`.

use super::{builder, B, KIND};
use jobs::{worker, JobInfo, Jobs, State};
use jobs_tests::{eventually, record, runs, Probe, Run, Running, Store};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Config {
    pub label: String,
}

pub async fn connect(queue: &str) -> Jobs {
    connect_with(queue, |b| b).await
}

pub async fn connect_with(
    queue: &str,
    configure: impl FnOnce(jobs::JobsBuilder) -> jobs::JobsBuilder,
) -> Jobs {
    let b = builder()
        .queues([queue])
        .state(Config {
            label: "configured".into(),
        })
        .poll_interval(Duration::from_millis(500));
    configure(b).connect().await.expect("connect")
}

pub async fn fresh(queue: &str) -> Store {
    let store = Store::of(KIND).await;
    store.purge(queue).await;
    store
}

pub async fn dead_letters(jobs: &Jobs, queue: &str) -> Vec<jobs::DeadLetter> {
    jobs.dead_letters(KIND)
        .unwrap()
        .list(Some(queue), 100)
        .await
        .unwrap()
}

#[worker(enqueuer = B, queue = "t_enqueue")]
async fn enqueue_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn every_enqueue_variant_is_processed() {
    let store = fresh("t_enqueue").await;
    let jobs = connect("t_enqueue").await;
    let key = "enqueue";
    jobs.enqueue::<EnqueueProbe>(Probe::new(key, 1))
        .await
        .unwrap();
    EnqueueProbe::enqueue(Probe::new(key, 2)).await.unwrap();
    let ids = EnqueueProbe::enqueue_batch((3..=5).map(|n| Probe::new(key, n)))
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(store.pending("t_enqueue").await, 5);

    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async { runs(key).len() == 5 }).await,
        "{:?}",
        runs(key)
    );
    assert!(eventually(WAIT, || async { store.pending("t_enqueue").await == 0 }).await);
    running.stop().await;
    let mut seen: Vec<u64> = runs(key).iter().map(|r| r.n).collect();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

#[worker(enqueuer = B, queue = "t_delay")]
async fn delay_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_delayed_job_runs_after_its_delay_and_not_before() {
    let _store = fresh("t_delay").await;
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

#[worker(enqueuer = B, queue = "t_notify")]
async fn notify_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn an_idle_processor_is_woken_by_a_new_job() {
    let _store = fresh("t_notify").await;
    let jobs = connect_with("t_notify", |b| b.poll_interval(Duration::from_secs(60))).await;
    let running = Running::start(&jobs);
    tokio::time::sleep(Duration::from_millis(300)).await; // let it go idle
    let start = Instant::now();
    NotifyProbe::enqueue(Probe::new("notify", 1)).await.unwrap();
    assert!(eventually(WAIT, || async { !runs("notify").is_empty() }).await);
    let latency = start.elapsed();
    running.stop().await;
    assert!(latency < Duration::from_secs(5), "woke after {latency:?}");
}

#[worker(enqueuer = B, queue = "t_foreign")]
async fn foreign_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn a_job_written_by_another_client_is_run() {
    let store = fresh("t_foreign").await;
    let jobs = connect("t_foreign").await;
    store
        .send_job(
            "t_foreign",
            "ForeignProbe",
            json!({"key": "foreign", "n": 7}),
        )
        .await;
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("foreign").is_empty() }).await);
    running.stop().await;
    assert_eq!(runs("foreign"), vec![Run { n: 7, attempt: 1 }]);
}

#[worker(enqueuer = B, queue = "t_flaky", max_retries = 5, retry_delay = "20ms")]
async fn flaky(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt);
    anyhow::ensure!(info.attempt >= 3, "attempt {} fails", info.attempt);
    Ok(())
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_until_it_succeeds() {
    let store = fresh("t_flaky").await;
    let jobs = connect("t_flaky").await;
    Flaky::enqueue(Probe::new("flaky", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("flaky").len() == 3 }).await);
    assert!(eventually(WAIT, || async { store.pending("t_flaky").await == 0 }).await);
    running.stop().await;
    let attempts: Vec<u32> = runs("flaky").iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(dead_letters(&jobs, "t_flaky").await.is_empty());
}

#[derive(Debug, thiserror::Error)]
#[error("mailbox full")]
pub struct MailboxFull;

#[worker(enqueuer = B, queue = "t_doomed", max_retries = 2, retry_delay = "10ms")]
async fn doomed(p: Probe, info: JobInfo) -> Result<(), MailboxFull> {
    record(&p.key, p.n, info.attempt);
    if runs(&p.key).len() > 3 {
        return Ok(()); // after re-enqueue from the dead letters
    }
    Err(MailboxFull)
}

#[tokio::test]
async fn exhausted_retries_end_as_a_dead_letter_that_can_be_retried() {
    let store = fresh("t_doomed").await;
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
    assert_eq!(store.pending("t_doomed").await, 0);

    let letter = dead_letters(&jobs, "t_doomed").await.remove(0);
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.error, "mailbox full");
    assert_eq!(letter.worker.as_deref(), Some("Doomed"));
    assert!(letter.message.is_some());

    // Re-enqueued with a fresh budget; this time it succeeds on its first run.
    jobs.dead_letters(KIND)
        .unwrap()
        .retry(&letter.id)
        .await
        .unwrap();
    assert!(eventually(WAIT, || async { runs("doomed").len() == 4 }).await);
    assert!(eventually(WAIT, || async { store.pending("t_doomed").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("doomed")[3], Run { n: 1, attempt: 1 });
    assert!(dead_letters(&jobs, "t_doomed").await.is_empty());
    assert!(matches!(
        jobs.dead_letters(KIND).unwrap().retry(&letter.id).await,
        Err(jobs::Error::DeadLetterNotFound(_))
    ));
}

#[worker(enqueuer = B, queue = "t_panic", max_retries = 3, retry_delay = "10ms")]
async fn panicky(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt);
    if info.attempt == 1 {
        panic!("boom on the first run");
    }
    Ok(())
}

#[tokio::test]
async fn a_panicking_job_is_retried_and_the_processor_survives() {
    let store = fresh("t_panic").await;
    let jobs = connect("t_panic").await;
    Panicky::enqueue(Probe::new("panic", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("panic").len() == 2 }).await);
    assert!(eventually(WAIT, || async { store.pending("t_panic").await == 0 }).await);
    running.stop().await;
    assert_eq!(
        runs("panic").iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[worker(enqueuer = B, queue = "t_panic_dead", max_retries = 0)]
async fn always_panics(_p: Probe) -> anyhow::Result<()> {
    panic!("always");
}

#[tokio::test]
async fn a_panic_message_is_kept_with_the_dead_letter() {
    let _store = fresh("t_panic_dead").await;
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

#[worker(enqueuer = B, queue = "t_timeout", max_retries = 2, retry_delay = "10ms", timeout = "100ms")]
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
    let store = fresh("t_timeout").await;
    let jobs = connect("t_timeout").await;
    SlowFirst::enqueue(Probe::new("timeout", 1)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { runs("timeout").len() == 2 }).await);
    assert!(eventually(WAIT, || async { store.pending("t_timeout").await == 0 }).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    assert_eq!(
        runs("timeout"),
        vec![Run { n: 1, attempt: 1 }, Run { n: 1, attempt: 2 }]
    );
}

#[worker(enqueuer = B, queue = "t_poison")]
async fn poison_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn poison_jobs_and_args_are_dead_lettered_at_once() {
    let store = fresh("t_poison").await;
    let jobs = connect("t_poison").await;
    let poison = store.send_poison("t_poison", "PoisonProbe").await;
    store
        .send_job(
            "t_poison",
            "PoisonProbe",
            json!({"key": "poison", "n": "NaN"}),
        )
        .await;
    store
        .send_job("t_poison", "PoisonProbe", json!({"key": "poison", "n": 1}))
        .await;
    let running = Running::start(&jobs);
    assert!(
        eventually(WAIT, || async {
            dead_letters(&jobs, "t_poison").await.len() == poison + 1
        })
        .await,
        "{:?}",
        dead_letters(&jobs, "t_poison")
            .await
            .iter()
            .map(|l| l.error.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        eventually(WAIT, || async { runs("poison").len() == 1 }).await,
        "the good job still runs"
    );
    assert!(eventually(WAIT, || async { store.pending("t_poison").await == 0 }).await);
    running.stop().await;

    let letters = dead_letters(&jobs, "t_poison").await;
    for letter in &letters {
        assert_eq!(letter.attempts, 1, "no retries for {letter:?}");
    }
    let reasons: Vec<&str> = letters.iter().map(|l| l.error.as_str()).collect();
    let malformed = reasons
        .iter()
        .filter(|e| e.starts_with("invalid job envelope:") || e.starts_with("malformed job:"))
        .count();
    let oversized = reasons
        .iter()
        .filter(|e| e.contains("bytes is over twice the limit of 1048576 bytes"))
        .count();
    assert_eq!((malformed, oversized), (poison - 1, 1), "{reasons:?}");
    // A reason names what is wrong without quoting a huge body.
    assert!(reasons.iter().all(|e| e.len() < 5_000), "{reasons:?}");
    let bad_args = letters
        .iter()
        .find(|l| l.error.starts_with("invalid args"))
        .expect("bad args letter");
    assert_eq!(bad_args.worker.as_deref(), Some("PoisonProbe"));
}

/// A hand-written worker whose queue name no backend accepts.
struct BadQueue;

impl jobs::Worker for BadQueue {
    type Args = Probe;
    type Enqueuer = B;
    const NAME: &'static str = "BadQueue";
    const CONFIG: jobs::WorkerConfig = jobs::WorkerConfig::new("Not A Queue!");

    async fn handle(_: Probe, _: jobs::JobContext) -> Result<(), jobs::BoxError> {
        Ok(())
    }
}

#[worker(enqueuer = B, queue = "t_refused")]
async fn refused_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn invalid_queues_and_oversized_jobs_are_refused_at_enqueue() {
    let store = fresh("t_refused").await;
    let jobs = connect_with("t_refused", |b| b.max_payload(64 * 1024)).await;
    let err = jobs
        .enqueue::<BadQueue>(Probe::new("refused", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, jobs::Error::InvalidQueue(q) if q == "Not A Queue!"),
        "{err}"
    );
    let big = Probe {
        key: "x".repeat(100_000),
        n: 1,
    };
    let err = jobs.enqueue::<RefusedProbe>(big.clone()).await.unwrap_err();
    assert!(
        matches!(err, jobs::Error::PayloadTooLarge { size, limit: 65_536, .. } if size > 100_000),
        "{err}"
    );
    assert!(err.to_string().contains("`RefusedProbe` job of"), "{err}");
    // One oversized job refuses the whole batch: nothing is stored.
    let err = jobs
        .enqueue_batch::<RefusedProbe>([Probe::new("refused", 2), big])
        .await
        .unwrap_err();
    assert!(matches!(err, jobs::Error::PayloadTooLarge { .. }), "{err}");
    assert_eq!(store.pending("t_refused").await, 0);
    let near = Probe {
        key: "y".repeat(60_000),
        n: 3,
    };
    jobs.enqueue::<RefusedProbe>(near).await.unwrap();
    assert_eq!(store.pending("t_refused").await, 1);
}

#[worker(enqueuer = B, queue = "t_unknown")]
async fn unknown_neighbour(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn an_unknown_worker_is_retried_then_dead_lettered() {
    let store = fresh("t_unknown").await;
    let jobs = connect_with("t_unknown", |b| {
        b.unknown_worker_retries(2, Duration::from_millis(10))
    })
    .await;
    store
        .send_job("t_unknown", "FromTheFuture", json!({}))
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
    assert_eq!(letter.worker.as_deref(), Some("FromTheFuture"));
}

#[worker(enqueuer = B, queue = "t_shutdown")]
async fn sleeper(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn shutdown_waits_for_a_running_job_to_finish() {
    let store = fresh("t_shutdown").await;
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
    assert_eq!(store.pending("t_shutdown").await, 0, "and was acked");
}

#[worker(enqueuer = B, queue = "t_release")]
async fn long_sleeper(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn shutdown_releases_a_job_still_running_at_the_deadline() {
    let store = fresh("t_release").await;
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
    assert_eq!(
        store.ready("t_release").await,
        1,
        "released: ready again at once, not after its lease"
    );
}

#[worker(enqueuer = B, queue = "t_lease")]
async fn outlives_lease(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, 0, info.attempt);
    tokio::time::sleep(Duration::from_millis(p.n)).await;
    Ok(())
}

#[tokio::test]
async fn a_job_longer_than_its_lease_is_not_handed_to_another_processor() {
    let store = fresh("t_lease").await;
    let first = connect_with("t_lease", |b| b.lease(Duration::from_secs(1))).await;
    let second = connect_with("t_lease", |b| b.lease(Duration::from_secs(1))).await;
    OutlivesLease::enqueue(Probe::new("lease", 3_500))
        .await
        .unwrap();
    let a = Running::start(&first);
    let b = Running::start(&second);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(eventually(WAIT, || async { store.pending("t_lease").await == 0 }).await);
    a.stop().await;
    b.stop().await;
    assert_eq!(runs("lease").len(), 1, "lease kept alive: run once");
}

#[worker(enqueuer = B, queue = "t_many")]
async fn counted(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn many_jobs_over_two_processors_run_exactly_once() {
    const JOBS: u64 = 3_000;
    let store = fresh("t_many").await;
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
            store.pending("t_many").await == 0
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

#[worker(enqueuer = B, queue = "t_extract")]
async fn extracting(p: Probe, State(config): State<Config>, info: JobInfo) -> anyhow::Result<()> {
    anyhow::ensure!(config.label == "configured");
    anyhow::ensure!(info.queue == "t_extract" && info.worker == "Extracting");
    record(&p.key, p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn state_and_job_info_reach_the_handler() {
    let store = fresh("t_extract").await;
    let jobs = connect("t_extract").await;
    Extracting::enqueue(Probe::new("extract", 3)).await.unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("extract").is_empty() }).await);
    assert!(eventually(WAIT, || async { store.pending("t_extract").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("extract"), vec![Run { n: 3, attempt: 1 }]);
}

#[worker(enqueuer = B, queue = "t_fair_a")]
async fn fair_a(p: Probe) -> anyhow::Result<()> {
    record(&p.key, 0, 1);
    Ok(())
}

#[worker(enqueuer = B, queue = "t_fair_b")]
async fn fair_b(p: Probe) -> anyhow::Result<()> {
    record(&p.key, 1, 1);
    Ok(())
}

/// Runs 400 of 600 + 600 waiting jobs on two queues; returns how many came from each.
async fn serve_two_queues(key: &str, weight_a: u32) -> (usize, usize) {
    let store = fresh("t_fair_a").await;
    store.purge("t_fair_b").await;
    let jobs = builder()
        .queues(["t_fair_a", "t_fair_b"])
        .queue_weight("t_fair_a", weight_a)
        .concurrency(1)
        .connect()
        .await
        .expect("connect");
    FairA::enqueue_batch((0..600).map(|n| Probe::new(key, n)))
        .await
        .unwrap();
    FairB::enqueue_batch((0..600).map(|n| Probe::new(key, n)))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(Duration::from_secs(60), || async { runs(key).len() >= 400 }).await);
    running.stop().await;
    let served: Vec<u64> = runs(key).iter().take(400).map(|r| r.n).collect();
    let a = served.iter().filter(|q| **q == 0).count();
    (a, served.len() - a)
}

#[tokio::test]
async fn queues_are_served_fairly_and_by_weight() {
    // Out of 400 picks, equal weights give 200 ± 10 each and weight 3 gives 300 ± 9 to the
    // heavy queue; both bounds sit more than four standard deviations from their expectation.
    let (a, b) = serve_two_queues("fair-equal", 1).await;
    assert!(
        a >= 140 && b >= 140,
        "equal weights starve no queue: {a} vs {b}"
    );
    let (a, b) = serve_two_queues("fair-weighted", 3).await;
    assert!(2 * a > 3 * b, "weight 3 to 1: {a} vs {b}");
}

#[worker(enqueuer = B, queue = "t_load")]
async fn under_load(p: Probe, info: JobInfo) -> anyhow::Result<()> {
    record(&p.key, p.n, info.attempt); // a start
    tokio::time::sleep(Duration::from_millis(if p.n < 32 { 100 } else { 3_000 })).await;
    record(&format!("{}-done", p.key), p.n, info.attempt);
    Ok(())
}

#[tokio::test]
async fn shutdown_under_load_acks_the_finished_and_releases_the_rest() {
    let store = fresh("t_load").await;
    let settings = |b: jobs::JobsBuilder| {
        b.concurrency(64)
            .shutdown_timeout(Duration::from_millis(600))
    };
    let first = connect_with("t_load", settings).await;
    UnderLoad::enqueue_batch((0..64).map(|n| Probe::new("load", n)))
        .await
        .unwrap();
    let running = Running::start(&first);
    assert!(
        eventually(WAIT, || async { runs("load").len() == 64 }).await,
        "all 64 running"
    );
    running.stop().await;
    let done: Vec<u64> = runs("load-done").iter().map(|r| r.n).collect();
    assert_eq!(
        done.len(),
        32,
        "the short jobs finished before the deadline: {done:?}"
    );
    assert!(done.iter().all(|n| *n < 32));
    assert_eq!(
        store.pending("t_load").await,
        32,
        "the short ones were acked, the long ones kept"
    );
    assert_eq!(
        store.ready("t_load").await,
        32,
        "released: ready at once, not after a lease"
    );

    // The next processor runs the released jobs at once.
    let start = Instant::now();
    let second = connect_with("t_load", settings).await;
    let running = Running::start(&second);
    assert!(eventually(WAIT, || async { runs("load-done").len() == 64 }).await);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "not after a lease: {:?}",
        start.elapsed()
    );
    assert!(eventually(WAIT, || async { store.pending("t_load").await == 0 }).await);
    running.stop().await;
    let mut starts: HashMap<u64, usize> = HashMap::new();
    for run in runs("load") {
        *starts.entry(run.n).or_default() += 1;
    }
    for n in 0..64 {
        let expected = if n < 32 { 1 } else { 2 };
        assert_eq!(
            starts[&n], expected,
            "job {n}: started {} times",
            starts[&n]
        );
    }
}
