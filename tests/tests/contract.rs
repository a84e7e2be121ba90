//! The foundation's user contract, compiled and run as written in a separate crate.

use jobs::{worker, Jobs, Pg, State};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static PINGS: AtomicU64 = AtomicU64::new(0);
static GREETINGS: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[derive(Clone)]
pub struct App {
    pub greeting: String,
}

#[worker(enqueuer = Pg)]
pub async fn pg_ping(args: Ping) -> anyhow::Result<()> {
    PINGS.fetch_add(args.n, Ordering::SeqCst);
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("greeting failed")]
pub struct GreetError;

#[worker(enqueuer = Pg, queue = "mailers", max_retries = 3, retry_delay = "50ms", timeout = "2s")]
pub async fn greet(args: Ping, State(app): State<App>) -> Result<(), GreetError> {
    if app.greeting != "hi" {
        return Err(GreetError);
    }
    GREETINGS.fetch_add(args.n, Ordering::SeqCst);
    Ok(())
}

async fn demo(database_url: &str, pool: sqlx::PgPool) -> anyhow::Result<()> {
    let jobs = Jobs::builder()
        .postgres(database_url)
        .state(App {
            greeting: "hi".into(),
        })
        .connect()
        .await?;
    let _id: jobs::JobId = PgPing::enqueue(Ping { n: 1 }).await?;
    PgPing::enqueue_in(Duration::from_millis(200), Ping { n: 2 }).await?;
    PgPing::enqueue_batch(vec![Ping { n: 3 }, Ping { n: 4 }]).await?;
    let mut tx = pool.begin().await?;
    PgPing::enqueue_tx(&mut *tx, Ping { n: 5 }).await?;
    tx.commit().await?;
    Greet::enqueue(Ping { n: 10 }).await?;

    let shutdown = CancellationToken::new();
    let runner = jobs.clone();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { runner.run(token).await });
    let done = jobs_tests::eventually(Duration::from_secs(20), || async {
        PINGS.load(Ordering::SeqCst) == 15 && GREETINGS.load(Ordering::SeqCst) == 10
    })
    .await;
    shutdown.cancel();
    handle.await??;
    anyhow::ensure!(done, "pings {PINGS:?}, greetings {GREETINGS:?}");
    Ok(())
}

#[tokio::test]
async fn the_contract_compiles_and_runs_as_written() {
    let pool = jobs_tests::pool().await;
    jobs_tests::purge(&pool, "default").await;
    jobs_tests::purge(&pool, "mailers").await;
    demo(&jobs_tests::database_url(), pool)
        .await
        .expect("the contract's demo");
}
