//! Backend outages, each on a throwaway server of its own: PostgreSQL crashed and restarted and
//! its connections terminated, Redis killed and restarted, while jobs run. The processor keeps
//! running, logs the outage, backs off, and resumes by itself; an enqueue during the outage
//! fails within a bounded time; no job is lost.

use jobs::{worker, Jobs, Pg, Sidekiq};
use jobs_tests::servers::{ThrowawayPostgres, ThrowawayRedis};
use jobs_tests::{eventually, record, runs, Probe, Running};
use sqlx::Connection;
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// How long an enqueue may take to fail while the backend is down.
const ENQUEUE_BOUND: Duration = Duration::from_secs(10);

/// Every log line of this test binary, as the processor printed it.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buffer
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines containing every one of `parts`.
fn lines_with(parts: &[&str]) -> Vec<String> {
    let logs = logs();
    let text =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    text.lines()
        .filter(|line| parts.iter().all(|p| line.contains(p)))
        .map(str::to_owned)
        .collect()
}

fn distinct(key: &str) -> usize {
    runs(key).iter().map(|r| r.n).collect::<HashSet<_>>().len()
}

#[worker(enqueuer = Pg, queue = "t_outage_pg")]
async fn outage_pg(p: Probe) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_rides_out_a_postgres_crash_and_terminated_connections() {
    const JOBS: u64 = 400;
    const KEY: &str = "outage-pg";
    logs();
    let server = tokio::task::block_in_place(ThrowawayPostgres::start);
    let jobs = Jobs::builder()
        .postgres(server.url())
        .queues(["t_outage_pg"])
        .concurrency(4)
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to the throwaway server");
    jobs.enqueue_batch::<OutagePg>((0..JOBS).map(|n| Probe::new(KEY, n)))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { distinct(KEY) >= 50 }).await);

    // Every connection of the processor is cut from the server side.
    let mut admin = sqlx::PgConnection::connect(&server.url()).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    drop(admin);
    assert!(cut > 0, "the processor had connections to cut");
    let resumed_from = distinct(KEY);
    assert!(
        eventually(WAIT, || async { distinct(KEY) >= resumed_from + 50 }).await,
        "resumed after its connections were terminated"
    );

    // The server crashes while jobs still wait; enqueues fail fast; the processor waits it out.
    assert!(
        distinct(KEY) < JOBS as usize,
        "jobs still waiting at the crash"
    );
    tokio::task::block_in_place(|| server.down());
    let started = Instant::now();
    let err = jobs
        .enqueue::<OutagePg>(Probe::new(KEY, JOBS))
        .await
        .expect_err("enqueue while PostgreSQL is down");
    let failed_after = started.elapsed();
    assert!(err.is_unavailable(), "{err}");
    assert!(failed_after < ENQUEUE_BOUND, "took {failed_after:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.handle.is_finished(), "the processor keeps running");
    let down_for = started.elapsed();
    tokio::task::block_in_place(|| server.up());
    jobs.enqueue::<OutagePg>(Probe::new(KEY, JOBS))
        .await
        .expect("enqueue once the server is back");
    assert!(
        eventually(WAIT, || async { distinct(KEY) == JOBS as usize + 1 }).await,
        "{} of {} jobs ran after the restart",
        distinct(KEY),
        JOBS + 1
    );
    running.stop().await;

    assert!(
        !lines_with(&[
            "connected to PostgreSQL",
            "postgres://postgres:***@127.0.0.1:"
        ])
        .is_empty(),
        "the connection is logged, its password redacted"
    );
    assert!(lines_with(&[ThrowawayPostgres::PASSWORD]).is_empty());
    let fetch_errors = lines_with(&["fetching jobs failed", "postgres"]).len();
    assert!(fetch_errors > 0, "the outage is logged");
    // Backoff: a handful of tries while it was down, not a busy loop.
    assert!(fetch_errors < 40, "{fetch_errors} failed fetches logged");
    let duplicates = runs(KEY).len() - distinct(KEY);
    jobs_tests::report!(
        "postgres: {cut} connections terminated, then down {down_for:.1?}: enqueue failed after \
         {failed_after:.1?}, {fetch_errors} failed fetches logged, all {} jobs ran, {duplicates} twice",
        JOBS + 1
    );
}

#[worker(enqueuer = Sidekiq, queue = "t_outage_redis")]
async fn outage_redis(p: Probe) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_rides_out_a_redis_restart() {
    const JOBS: u64 = 400;
    const KEY: &str = "outage-redis";
    logs();
    let mut server = ThrowawayRedis::start().await;
    let jobs = Jobs::builder()
        .redis(server.url())
        .queues(["t_outage_redis"])
        .concurrency(4)
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to the throwaway server");
    jobs.enqueue_batch::<OutageRedis>((0..JOBS).map(|n| Probe::new(KEY, n)))
        .await
        .unwrap();
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { distinct(KEY) >= 100 }).await);
    assert!(
        distinct(KEY) < JOBS as usize,
        "jobs still waiting at the restart"
    );
    server.down();
    let started = Instant::now();
    let err = jobs
        .enqueue::<OutageRedis>(Probe::new(KEY, JOBS))
        .await
        .expect_err("enqueue while Redis is down");
    let failed_after = started.elapsed();
    assert!(err.is_unavailable(), "{err}");
    assert!(failed_after < ENQUEUE_BOUND, "took {failed_after:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.handle.is_finished(), "the processor keeps running");
    let down_for = started.elapsed();
    server.up().await;
    jobs.enqueue::<OutageRedis>(Probe::new(KEY, JOBS))
        .await
        .expect("enqueue once the server is back");
    assert!(
        eventually(WAIT, || async { distinct(KEY) == JOBS as usize + 1 }).await,
        "{} of {} jobs ran after the restart: {:#?}",
        distinct(KEY),
        JOBS + 1,
        lines_with(&["WARN"])
            .into_iter()
            .chain(lines_with(&["ERROR"]))
            .collect::<Vec<_>>()
    );
    running.stop().await;

    let fetch_errors = lines_with(&["fetching jobs failed", "redis"]).len();
    assert!(fetch_errors > 0, "the outage is logged");
    assert!(fetch_errors < 40, "{fetch_errors} failed fetches logged");
    let duplicates = runs(KEY).len() - distinct(KEY);
    jobs_tests::report!(
        "redis: down {down_for:.1?}: enqueue failed after {failed_after:.1?}, {fetch_errors} \
         failed fetches logged, all {} jobs ran, {duplicates} twice",
        JOBS + 1
    );
}

#[tokio::test]
async fn a_failed_connection_names_the_url_without_its_password() {
    let url = jobs_tests::redis_url().replacen("redis://", "redis://:wrong-secret@", 1);
    let err = Jobs::builder()
        .redis(&url)
        .queues(["t_outage_redis"])
        .connect()
        .await
        .expect_err("a wrong password is refused");
    let text = err.to_string();
    assert!(text.contains("redis://:***@"), "{text}");
    // Redis's own answer, not a pool timeout.
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        !err.is_unavailable(),
        "a wrong password is no outage: {text}"
    );
    assert!(!text.contains("wrong-secret"), "{text}");
    let builder = Jobs::builder().postgres("postgres://app:pg-secret@db:5432/app");
    let debug = format!("{builder:?}");
    assert!(debug.contains("postgres://app:***@db:5432/app"), "{debug}");
    assert!(!debug.contains("pg-secret"), "{debug}");
}

#[worker(enqueuer = Sidekiq, queue = "t_quiet_args", max_retries = 0)]
async fn quiet_args(p: Probe) -> anyhow::Result<()> {
    anyhow::bail!("job {} failed", p.n)
}

#[worker(enqueuer = Sidekiq, queue = "t_loud_args", max_retries = 0)]
async fn loud_args(p: Probe) -> anyhow::Result<()> {
    anyhow::bail!("job {} failed", p.n)
}

#[tokio::test]
async fn job_args_stay_out_of_logs_unless_opted_in() {
    logs();
    let store = jobs_tests::Store::of(jobs::BackendKind::Sidekiq).await;
    store.purge("t_quiet_args").await;
    store.purge("t_loud_args").await;
    let connect = |queue: &'static str, log_args: bool| {
        Jobs::builder()
            .redis(jobs_tests::redis_url())
            .queues([queue])
            .log_args(log_args)
            .connect()
    };
    let quiet = connect("t_quiet_args", false).await.unwrap();
    let loud = connect("t_loud_args", true).await.unwrap();
    quiet
        .enqueue::<QuietArgs>(Probe::new("quiet-secret-value", 1))
        .await
        .unwrap();
    // Args of the wrong type: serde's message would quote them.
    store
        .send_job(
            "t_quiet_args",
            "QuietArgs",
            serde_json::json!({"key": "x", "n": "quiet-secret-string"}),
        )
        .await;
    loud.enqueue::<LoudArgs>(Probe::new("loud-visible-value", 2))
        .await
        .unwrap();
    let running = [Running::start(&quiet), Running::start(&loud)];
    assert!(
        eventually(WAIT, || async {
            store.pending("t_quiet_args").await == 0 && store.pending("t_loud_args").await == 0
        })
        .await
    );
    for r in running {
        r.stop().await;
    }
    assert!(!lines_with(&["QuietArgs", "dead-lettering"]).is_empty());
    assert!(lines_with(&["quiet-secret"]).is_empty(), "args were logged");
    assert!(
        !lines_with(&["LoudArgs", "loud-visible-value"]).is_empty(),
        "opted-in args are logged"
    );
}
