//! The crash suite: processors in child processes killed with SIGKILL mid-batch, on every
//! backend. A backend's test file declares `KIND`, `mod conformance;`, the crash workers as
//! `scenarios` (a module of `crash_worker`), then `mod crash;`.
//!
//! What is asserted is completeness: every job runs. Jobs a killed process had run but whose
//! outcome it had not yet recorded run again (at-least-once); their number is reported.

use super::conformance::{connect, fresh};
use super::scenarios::{Alongside, Repeated, Restarted};
use super::{crash_worker, KIND};
use jobs::{BackendKind, Worker};
use jobs_tests::{eventually, Store};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::process::Child;

const WAIT: Duration = Duration::from_secs(30);
/// Long enough for the killed processes' leases (2 s) to run out and their jobs to be redone.
const FINISH: Duration = Duration::from_secs(120);

/// A fresh queue of `W` holding `jobs` jobs, and its run counts cleared.
async fn prepare<W: Worker<Args = u64>>(jobs: u64) -> (Store, redis::aio::MultiplexedConnection) {
    let queue = W::CONFIG.queue;
    let store = fresh(queue).await;
    let mut redis = redis::Client::open(jobs_tests::redis_url())
        .expect("REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let _: () = redis::cmd("DEL")
        .arg(crash_worker::runs_key(queue))
        .query_async(&mut redis)
        .await
        .expect("DEL");
    let client = connect(queue).await;
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1_000) {
        client
            .enqueue_batch::<W>(chunk.iter().copied())
            .await
            .expect("enqueue");
    }
    (store, redis)
}

/// Starts a processor of `queue` in a child process.
fn spawn(queue: &str, concurrency: usize) -> Child {
    let backend = match KIND {
        BackendKind::Pg => "pg",
        BackendKind::Sqlite => "sqlite",
        _ => "redis",
    };
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crash_processor"))
        .env("CRASH_BACKEND", backend)
        .env("CRASH_QUEUE", queue)
        .env("CRASH_CONCURRENCY", concurrency.to_string())
        .env("DATABASE_URL", jobs_tests::database_url())
        .env("REDIS_URL", jobs_tests::redis_url())
        .env("SQLITE_URL", jobs_tests::sqlite_url())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn a child processor")
}

/// Kills a child processor, which must still be running: one that died on its own (say, it
/// could not connect) would make the test prove nothing.
async fn kill(mut child: Child) {
    if let Ok(Some(status)) = child.try_wait() {
        panic!("the child processor exited on its own ({status}); see its output above");
    }
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reap the child");
}

/// Runs per job of `queue`, counted by the workers wherever they ran.
async fn runs(redis: &redis::aio::MultiplexedConnection, queue: &str) -> HashMap<u64, u64> {
    redis::cmd("HGETALL")
        .arg(crash_worker::runs_key(queue))
        .query_async(&mut redis.clone())
        .await
        .expect("HGETALL")
}

/// Waits until `processor` has run every one of `jobs` jobs and none is left; returns the
/// duplicate runs.
async fn finished(
    store: &Store,
    redis: &redis::aio::MultiplexedConnection,
    queue: &str,
    jobs: u64,
    processor: &mut Child,
) -> u64 {
    let done = eventually(FINISH, || {
        let exited = matches!(processor.try_wait(), Ok(Some(_)));
        async move {
            exited
                || (runs(redis, queue).await.len() as u64 == jobs
                    && store.pending(queue).await == 0)
        }
    })
    .await;
    if let Ok(Some(status)) = processor.try_wait() {
        panic!("the child processor exited on its own ({status}); see its output above");
    }
    let runs = runs(redis, queue).await;
    assert!(
        done,
        "{} of {jobs} jobs ran; {} still pending",
        runs.len(),
        store.pending(queue).await
    );
    assert!((0..jobs).all(|n| runs.contains_key(&n)));
    runs.values().map(|n| n - 1).sum()
}

#[tokio::test]
async fn a_processor_killed_mid_batch_loses_nothing_after_a_restart() {
    const JOBS: u64 = 2_000;
    let queue = Restarted::CONFIG.queue;
    let (store, redis) = prepare::<Restarted>(JOBS).await;
    let doomed = spawn(queue, 16);
    assert!(eventually(WAIT, || async { runs(&redis, queue).await.len() >= 300 }).await);
    kill(doomed).await;
    let at_kill = runs(&redis, queue).await.len();
    assert!((at_kill as u64) < JOBS, "killed mid-batch");
    let mut restarted = spawn(queue, 16);
    let duplicates = finished(&store, &redis, queue, JOBS, &mut restarted).await;
    kill(restarted).await;
    jobs_tests::report!(
        "{KIND}: killed after {at_kill} of {JOBS} jobs, restarted: all ran; {duplicates} ran twice"
    );
}

#[tokio::test]
async fn a_processor_killed_beside_a_running_one_loses_nothing() {
    const JOBS: u64 = 2_000;
    let queue = Alongside::CONFIG.queue;
    let (store, redis) = prepare::<Alongside>(JOBS).await;
    let doomed = spawn(queue, 16);
    let mut survivor = spawn(queue, 16);
    assert!(eventually(WAIT, || async { runs(&redis, queue).await.len() >= 300 }).await);
    kill(doomed).await;
    let at_kill = runs(&redis, queue).await.len();
    assert!((at_kill as u64) < JOBS, "killed mid-batch");
    let duplicates = finished(&store, &redis, queue, JOBS, &mut survivor).await;
    kill(survivor).await;
    jobs_tests::report!("{KIND}: one of two processors killed after {at_kill} of {JOBS} jobs: all ran; {duplicates} ran twice");
}

#[tokio::test]
async fn a_processor_killed_again_and_again_loses_nothing() {
    const JOBS: u64 = 5_000;
    const KILLS: u64 = 5;
    let queue = Repeated::CONFIG.queue;
    let (store, redis) = prepare::<Repeated>(JOBS).await;
    let started = Instant::now();
    let mut child = spawn(queue, 4);
    for kill_no in 1..=KILLS {
        // Killed after a few seconds, or sooner once it has done its share of the backlog,
        // so every kill lands mid-drain however fast this machine is.
        let target = kill_no * JOBS / (KILLS + 2);
        eventually(Duration::from_secs(3), || async {
            runs(&redis, queue).await.len() as u64 >= target
        })
        .await;
        kill(child).await;
        assert!(
            (runs(&redis, queue).await.len() as u64) < JOBS,
            "kill {kill_no} came after the drain"
        );
        child = spawn(queue, 4);
    }
    let duplicates = finished(&store, &redis, queue, JOBS, &mut child).await;
    kill(child).await;
    jobs_tests::report!(
        "{KIND}: {KILLS} kills while {JOBS} jobs drained in {:.1?}: all ran; {duplicates} ran twice",
        started.elapsed()
    );
}
