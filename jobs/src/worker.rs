//! The `Worker` trait: what a job type is, where it goes, and how it runs.

use crate::{BackendKind, BoxError, Enqueuer, JobContext, StateRequirement};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// A kind of background job: its args, its backend, its name and its handler.
///
/// `#[worker]` writes this impl for an `async fn`; it can also be written by hand and registered
/// with [`register!`](crate::register) (or on a processor builder):
///
/// ```
/// use jobs::{BoxError, JobContext, Pg, Worker, WorkerConfig};
///
/// pub struct Resize;
///
/// impl Worker for Resize {
///     type Args = String;
///     type Enqueuer = Pg;
///     const NAME: &'static str = "Resize";
///     const CONFIG: WorkerConfig = WorkerConfig::new("images").max_retries(3);
///
///     async fn handle(path: String, ctx: JobContext) -> Result<(), BoxError> {
///         println!("resizing {path}, attempt {}", ctx.info().attempt);
///         Ok(())
///     }
/// }
/// jobs::register!(Resize);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a worker",
    label = "annotate an `async fn` with `#[worker(enqueuer = …)]` or implement `jobs::Worker`"
)]
pub trait Worker: Sized + Send + Sync + 'static {
    /// The job's arguments, stored as JSON.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The backend the job is enqueued to: [`Pg`](crate::Pg) or [`Sidekiq`](crate::Sidekiq).
    type Enqueuer: Enqueuer;
    /// The job name stored with each job; unique among the workers of a program.
    const NAME: &'static str;
    /// Queue, retries, backoff and timeout.
    const CONFIG: WorkerConfig = WorkerConfig::DEFAULT;
    /// Backends this worker moved away from whose leftover jobs are still run
    /// (`drain = Sidekiq` of `#[worker]`); remove an entry once that backend has none left.
    const DRAIN: &'static [BackendKind] = &[];

    /// Lists the state types the handler needs, checked when [`Jobs`](crate::Jobs) connects.
    fn requirements(out: &mut Vec<StateRequirement>) {
        let _ = out;
    }

    /// Runs one job.
    fn handle(
        args: Self::Args,
        ctx: JobContext,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// How a worker's jobs are queued and retried.
///
/// ```
/// use std::time::Duration;
/// const CONFIG: jobs::WorkerConfig = jobs::WorkerConfig::new("mailers")
///     .max_retries(5)
///     .retry_delay(Duration::from_millis(500))
///     .timeout(Duration::from_secs(30));
/// assert_eq!(CONFIG.queue, "mailers");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The queue the jobs are stored in.
    pub queue: &'static str,
    /// How many times a failed job is retried before it becomes a dead letter.
    pub max_retries: u32,
    /// The base of the exponential backoff between attempts; see [`backoff`](crate::backoff).
    pub retry_delay: Duration,
    /// How long one run may take before it counts as failed; `None` for no limit.
    pub timeout: Option<Duration>,
}

impl WorkerConfig {
    /// Queue `default`, 25 retries, a 1 s backoff base, no timeout.
    pub const DEFAULT: Self = Self::new("default");

    /// The defaults on queue `queue`.
    pub const fn new(queue: &'static str) -> Self {
        Self {
            queue,
            max_retries: 25,
            retry_delay: Duration::from_secs(1),
            timeout: None,
        }
    }

    /// Sets how many retries a failing job gets.
    pub const fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the base of the backoff.
    pub const fn retry_delay(mut self, retry_delay: Duration) -> Self {
        self.retry_delay = retry_delay;
        self
    }

    /// Sets the time limit of one run.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}
