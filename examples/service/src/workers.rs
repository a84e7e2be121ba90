//! The service's workers. The Postgres and Redis mailers are identical but for `enqueuer`: moving
//! a worker between backends is changing that one argument.

use jobs::{worker, JobInfo, Pg, Sidekiq, State};
use serde::{Deserialize, Serialize};

/// What the mailers need from the application.
#[derive(Clone)]
pub struct Mailer {
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub email: String,
}

/// Sends the welcome mail; jobs live in PostgreSQL (pgmq queue `mailers`).
#[worker(enqueuer = Pg, queue = "mailers", max_retries = 5)]
pub async fn send_welcome_pg(
    args: Welcome,
    State(mailer): State<Mailer>,
    info: JobInfo,
) -> anyhow::Result<()> {
    deliver(&mailer, &args, &info).await
}

/// The same worker on Redis, in Sidekiq's format (`queue:mailers`).
#[worker(enqueuer = Sidekiq, queue = "mailers", max_retries = 5)]
pub async fn send_welcome_redis(
    args: Welcome,
    State(mailer): State<Mailer>,
    info: JobInfo,
) -> anyhow::Result<()> {
    deliver(&mailer, &args, &info).await
}

/// A worker that moved from Sidekiq to Postgres: new jobs go to Postgres, and the jobs still
/// waiting in Redis are run too. Delete `drain = Sidekiq` once Redis has none left.
#[worker(enqueuer = Pg, queue = "receipts", drain = Sidekiq)]
pub async fn send_receipt(
    args: Welcome,
    State(mailer): State<Mailer>,
    info: JobInfo,
) -> anyhow::Result<()> {
    deliver(&mailer, &args, &info).await
}

async fn deliver(mailer: &Mailer, mail: &Welcome, info: &JobInfo) -> anyhow::Result<()> {
    tracing::info!(job = %info.id, worker = %info.worker, attempt = info.attempt, "mail from {} to {}", mailer.from, mail.email);
    Ok(())
}
