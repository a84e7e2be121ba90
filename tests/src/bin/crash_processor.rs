//! A processor in a process of its own, for the tests that kill one with SIGKILL mid-batch.
//! `CRASH_BACKEND=sqlite` runs the SQLite crash worker on `SQLITE_URL`, `pg` the Postgres one on
//! `DATABASE_URL`; otherwise the Redis one.

#[path = "../crash_worker.rs"]
mod crash_worker;

use jobs::Jobs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let builder = match std::env::var("CRASH_BACKEND").as_deref() {
        Ok("sqlite") => Jobs::builder()
            .sqlite(jobs_tests::sqlite_url())
            .queues(["t_crash_sqlite"]),
        Ok("pg") => Jobs::builder()
            .postgres(jobs_tests::database_url())
            .queues(["t_crash_pg"]),
        _ => Jobs::builder()
            .redis(jobs_tests::redis_url())
            .queues(["t_crash"]),
    };
    let jobs = builder
        .lease(Duration::from_secs(2))
        .concurrency(16)
        .connect()
        .await?;
    jobs.run(CancellationToken::new()).await?;
    Ok(())
}
