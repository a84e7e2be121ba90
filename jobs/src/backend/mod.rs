//! The storage contract: a backend stores and hands out jobs; every policy lives in the engine.

pub(crate) mod pg;
pub(crate) mod sidekiq;
pub(crate) mod sqlite;

use crate::{DeadLetter, Error, JobId};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A claim on one fetched job, valid until its lease runs out.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub queue: Arc<str>,
    pub id: JobId,
    /// Which delivery this is (Postgres); an outcome applies only while the job is still on this
    /// delivery, so a late outcome never touches a job another processor has claimed since.
    pub delivery: i32,
    /// The job exactly as stored (Redis), which is how it is found again in the working list.
    pub raw: Option<Arc<[u8]>>,
}

/// A job handed out by [`Backend::fetch`].
pub(crate) struct Fetched {
    pub lease: Lease,
    /// The job in the engine's [`Envelope`](crate::Envelope) shape, not yet decoded: decoding
    /// is the engine's job, so a bad one is dead-lettered. `Err` says why the stored body is not
    /// JSON at all (without quoting it).
    pub payload: Result<Value, String>,
    /// The body's size as stored, in bytes.
    pub size: usize,
    pub enqueued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What became of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Succeeded: remove the job.
    Done,
    /// Failed with attempts left: run it again after `delay`, recording the failure.
    Retry {
        delay: Duration,
        retry_count: u32,
        error: String,
    },
    /// Cannot or must not run again: keep it aside with its reason.
    Dead {
        error: String,
        attempts: u32,
        worker: Option<String>,
    },
    /// Not run (shutdown): make it available again at once.
    Release,
}

/// What an idle processor waits with.
pub(crate) struct Wait<'a> {
    pub queues: &'a [String],
    /// The longest wait without news.
    pub poll: Duration,
    /// Woken by [`Backend::listen`].
    pub wake: &'a Notify,
    pub shutdown: &'a CancellationToken,
}

/// One storage engine. Object-safe so the engine and the client hold any backend alike.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Creates the storage of these queues if missing.
    fn prepare<'a>(&'a self, queues: &'a [String]) -> BoxFuture<'a, Result<(), Error>>;

    /// Stores jobs (each a serialized [`Envelope`](crate::Envelope)) in one round trip; they
    /// become visible after `delay`.
    fn push<'a>(
        &'a self,
        queue: &'a str,
        payloads: Vec<Value>,
        delay: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<JobId>, Error>>;

    /// Claims up to `max` ready jobs for `lease`, serving `queues` in the order given.
    fn fetch<'a>(
        &'a self,
        queues: &'a [String],
        max: usize,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Fetched>, Error>>;

    /// Waits until work may exist (or claims some while blocking).
    fn idle<'a>(&'a self, wait: Wait<'a>) -> BoxFuture<'a, Result<Vec<Fetched>, Error>>;

    /// Records outcomes, batched.
    fn complete<'a>(&'a self, batch: &'a [(Lease, Outcome)]) -> BoxFuture<'a, Result<(), Error>>;

    /// Pushes the leases of running jobs forward; called periodically, with no leases too.
    fn extend<'a>(
        &'a self,
        leases: &'a [Lease],
        lease: Duration,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Periodic housekeeping, such as recovering the jobs of processes that died.
    fn maintain(&self, lease: Duration) -> BoxFuture<'_, Result<(), Error>>;

    /// Wakes `wake` whenever a job may have been stored in `queues`, until `stop`.
    fn listen(
        &self,
        queues: Vec<String>,
        wake: Arc<Notify>,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ()>;

    /// The newest `limit` dead letters, of one queue or of all.
    fn dead_list<'a>(
        &'a self,
        queue: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, Error>>;

    /// Puts a dead job back on its queue with a fresh retry budget.
    fn dead_retry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<JobId, Error>>;

    /// Deletes a dead letter.
    fn dead_delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}
