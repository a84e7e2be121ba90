//! A processor in a process of its own, for the tests that kill one with SIGKILL mid-batch.
//! Serves `CRASH_QUEUE` of backend `CRASH_BACKEND` (`pg` on `DATABASE_URL`, `sqlite` on
//! `SQLITE_URL`, otherwise Redis on `REDIS_URL`) with `CRASH_CONCURRENCY` slots (default 16).

#[path = "../crash_worker.rs"]
mod crash_worker;

use jobs::Jobs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queue = std::env::var("CRASH_QUEUE")?;
    let concurrency = match std::env::var("CRASH_CONCURRENCY") {
        Ok(n) => n.parse()?,
        Err(_) => 16,
    };
    let builder = match std::env::var("CRASH_BACKEND").as_deref() {
        Ok("sqlite") => Jobs::builder().sqlite(jobs_tests::sqlite_url()),
        Ok("pg") => Jobs::builder().postgres(jobs_tests::database_url()),
        _ => Jobs::builder().redis(jobs_tests::redis_url()),
    };
    let jobs = builder
        .queues([queue])
        .lease(Duration::from_secs(2))
        .concurrency(concurrency)
        .connect()
        .await?;
    jobs.run(CancellationToken::new()).await?;
    Ok(())
}
