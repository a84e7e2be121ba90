//! End to end on PostgreSQL: define workers, enqueue, process, watch a retry and a dead letter.
//!
//! `scripts/example.sh` starts a local PostgreSQL and runs this; or set DATABASE_URL and
//! `cargo run -p jobs-examples --example postgres`.

use jobs::{worker, JobInfo, Jobs, Pg, State};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Serialize, Deserialize)]
struct Welcome {
    user_id: u64,
}

#[derive(Clone)]
struct App {
    sent: Arc<AtomicU64>,
}

/// Sends a welcome mail; the mail server "fails" on user 13's first attempt.
#[worker(enqueuer = Pg, queue = "example_mailers", max_retries = 3, retry_delay = "200ms")]
async fn send_welcome(args: Welcome, State(app): State<App>, info: JobInfo) -> anyhow::Result<()> {
    if args.user_id == 13 && info.attempt == 1 {
        anyhow::bail!("mail server busy (attempt {})", info.attempt);
    }
    app.sent.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Always fails: ends as a dead letter after its single retry.
#[worker(enqueuer = Pg, queue = "example_mailers", max_retries = 1, retry_delay = "100ms")]
async fn send_to_nowhere(_args: Welcome) -> anyhow::Result<()> {
    anyhow::bail!("no such mailbox")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/jobs_test".into());
    let sent = Arc::new(AtomicU64::new(0));
    let jobs = Jobs::builder()
        .postgres(&url)
        .state(App { sent: sent.clone() })
        .connect()
        .await?;

    SendWelcome::enqueue_batch((1..=20).map(|user_id| Welcome { user_id })).await?;
    SendWelcome::enqueue_in(Duration::from_millis(500), Welcome { user_id: 21 }).await?;
    let doomed = SendToNowhere::enqueue(Welcome { user_id: 0 }).await?;
    println!("enqueued 21 welcome mails and one to nowhere (job {doomed})");

    let shutdown = CancellationToken::new();
    let runner = jobs.clone();
    let token = shutdown.clone();
    let processor = tokio::spawn(async move { runner.run(token).await });

    let dead = jobs.dead_letters(jobs::BackendKind::Pg)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let letters = dead.list(Some("example_mailers"), 10).await?;
        let done = sent.load(Ordering::SeqCst);
        if done == 21 && letters.iter().any(|l| l.job_id == doomed) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out: {done} sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "sent {} mails (user 13's was retried once)",
        sent.load(Ordering::SeqCst)
    );
    for letter in dead.list(Some("example_mailers"), 10).await? {
        if letter.job_id == doomed {
            println!(
                "dead letter {}: {} after {} attempts: {}",
                letter.id,
                letter.worker.as_deref().unwrap_or("?"),
                letter.attempts,
                letter.error
            );
            dead.delete(&letter.id).await?;
        }
    }
    shutdown.cancel();
    processor.await??;
    println!("processor stopped cleanly");
    Ok(())
}
