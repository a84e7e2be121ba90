//! The quick start: no server needed. Enqueues a batch of jobs to an SQLite file, processes them
//! with a progress bar, shows a job that fails once and is retried, and one that ends as a dead
//! letter. `cargo run --example quickstart`

use indicatif::{ProgressBar, ProgressStyle};
use jobs::{worker, BackendKind, JobInfo, Jobs, Sqlite, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Image {
    image: u64,
}

/// Where the jobs report to: the progress bar.
#[derive(Clone)]
struct Progress(Arc<ProgressBar>);

impl Progress {
    /// Prints a line above the bar (and without one when the output is not a terminal).
    fn say(&self, line: String) {
        self.0.suspend(|| println!("{line}"));
    }
}

#[worker(enqueuer = Sqlite, queue = "images")]
async fn resize(args: Image, State(progress): State<Progress>) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(20)).await; // the "work"
    progress.0.inc(1);
    progress
        .0
        .set_message(format!("resized image {}", args.image));
    Ok(())
}

/// Fails on its first attempt (a flaky upstream), succeeds on the retry.
#[worker(enqueuer = Sqlite, queue = "images", max_retries = 3, retry_delay = "300ms")]
async fn fetch_thumbnail(
    args: Image,
    info: JobInfo,
    State(progress): State<Progress>,
) -> anyhow::Result<()> {
    if info.attempt == 1 {
        progress.say(format!(
            "  thumbnail {}: attempt 1 failed (upstream timed out), retrying",
            args.image
        ));
        anyhow::bail!("upstream timed out");
    }
    progress.say(format!(
        "  thumbnail {}: attempt {} succeeded",
        args.image, info.attempt
    ));
    progress.0.inc(1);
    Ok(())
}

/// Always fails: after its retries it is kept as a dead letter with its reason.
#[worker(enqueuer = Sqlite, queue = "images", max_retries = 1, retry_delay = "200ms")]
async fn upload_to_missing_bucket(
    args: Image,
    State(progress): State<Progress>,
) -> anyhow::Result<()> {
    progress.say(format!("  upload {}: bucket not found", args.image));
    anyhow::bail!("bucket `photos-archive` does not exist")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::temp_dir().join("jobs-quickstart.db");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}", path.display());

    const IMAGES: u64 = 50;
    let bar = ProgressBar::new(IMAGES + 1);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")?);
    let progress = Progress(Arc::new(bar));

    let jobs = Jobs::builder()
        .sqlite(&url)
        .state(progress.clone())
        .concurrency(8)
        .connect()
        .await?;
    Resize::enqueue_batch((1..=IMAGES).map(|image| Image { image })).await?;
    FetchThumbnail::enqueue(Image { image: 7 }).await?;
    UploadToMissingBucket::enqueue(Image { image: 13 }).await?;
    progress.say(format!(
        "enqueued {} jobs to {}",
        IMAGES + 2,
        path.display()
    ));

    let shutdown = CancellationToken::new();
    let runner = jobs.clone();
    let token = shutdown.clone();
    let processor = tokio::spawn(async move { runner.run(token).await });

    let dead = jobs.dead_letters(BackendKind::Sqlite)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while progress.0.position() < IMAGES + 1 || dead.list(None, 1).await?.is_empty() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.0.finish_with_message("done");
    shutdown.cancel();
    processor.await??;

    for letter in dead.list(None, 10).await? {
        println!(
            "dead letter {}: {} after {} attempts: {}",
            letter.id,
            letter.worker.as_deref().unwrap_or("?"),
            letter.attempts,
            letter.error
        );
    }
    println!();
    println!("Next:");
    println!(
        "  - the jobs table is in {} (sqlite3 it: jobs_queue, jobs_dead_letters)",
        path.display()
    );
    println!("  - README.md: defining workers, enqueuing, processors, Postgres and Redis backends");
    println!("  - examples/postgres.rs: the same on PostgreSQL (scripts/example.sh)");
    Ok(())
}
