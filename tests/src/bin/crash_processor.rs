//! A processor in a process of its own, for the test that kills it with SIGKILL mid-batch.

#[path = "../crash_worker.rs"]
mod crash_worker;

use jobs::Jobs;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs = Jobs::builder()
        .redis(jobs_tests::redis_url())
        .queues(["t_crash"])
        .lease(Duration::from_secs(2))
        .concurrency(16)
        .connect()
        .await?;
    jobs.run(CancellationToken::new()).await?;
    Ok(())
}
