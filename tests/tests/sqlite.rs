//! The embedded SQLite backend: the conformance suite, plus transactional enqueue.

use jobs::{worker, BackendKind, Jobs, Sqlite};
use jobs_tests::{eventually, record, runs, Probe, Running, Store};
use std::time::Duration;

type B = Sqlite;
const KIND: BackendKind = BackendKind::Sqlite;
const WAIT: Duration = Duration::from_secs(20);

fn builder() -> jobs::JobsBuilder {
    Jobs::builder().sqlite(jobs_tests::sqlite_url())
}

mod conformance;
#[path = "../src/crash_worker.rs"]
mod crash_worker;
use crash_worker::sqlite as scenarios;
mod crash;

use conformance::{connect, fresh};

#[worker(enqueuer = Sqlite, queue = "t_tx")]
async fn tx_probe(p: Probe) -> anyhow::Result<()> {
    record(&p.key, p.n, 1);
    Ok(())
}

#[tokio::test]
async fn enqueue_tx_follows_the_sqlite_transaction() {
    let store = fresh("t_tx").await;
    let jobs = connect("t_tx").await;
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    TxProbe::enqueue_tx(&mut *tx, Probe::new("sqlite-tx", 1))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.pending("t_tx").await, 0, "rolled back: not enqueued");
    let mut tx = pool.begin().await.unwrap();
    TxProbe::enqueue_tx(&mut *tx, Probe::new("sqlite-tx", 2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.pending("t_tx").await, 1);
    let running = Running::start(&jobs);
    assert!(eventually(WAIT, || async { !runs("sqlite-tx").is_empty() }).await);
    assert!(eventually(WAIT, || async { store.pending("t_tx").await == 0 }).await);
    running.stop().await;
    assert_eq!(runs("sqlite-tx")[0].n, 2);
}
