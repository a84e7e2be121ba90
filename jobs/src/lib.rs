//! # jobs
//!
//! Background jobs for Rust services, on PostgreSQL (pgmq) or on Redis in Sidekiq's format.
//! Annotate an `async fn` with [`#[worker]`](worker), connect a [`Jobs`] client, enqueue with the
//! generated helpers, and run the processors:
//!
//! ```no_run
//! use jobs::{worker, Jobs, Pg, State};
//! use serde::{Deserialize, Serialize};
//! use tokio_util::sync::CancellationToken;
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Welcome { pub user_id: u64 }
//!
//! #[derive(Clone)]
//! pub struct App { pub from: String }
//!
//! #[worker(enqueuer = Pg, queue = "mailers", max_retries = 5)]
//! async fn send_welcome(args: Welcome, State(app): State<App>) -> anyhow::Result<()> {
//!     println!("{} welcomes user {}", app.from, args.user_id);
//!     Ok(())
//! }
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let jobs = Jobs::builder()
//!     .postgres("postgres://localhost/app")
//!     .state(App { from: "hello@example.com".into() })
//!     .connect()
//!     .await?;
//! SendWelcome::enqueue(Welcome { user_id: 7 }).await?;
//! jobs.run(CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! Delivery is at-least-once: a job runs again if its processor dies before recording the
//! outcome, so handlers should be idempotent. A failing, panicking or timed-out job is retried
//! with exponential backoff, then kept as a dead letter with its last error.

mod backend;
mod client;
mod context;
mod dead;
mod enqueue;
mod envelope;
mod error;
mod processor;
mod registry;
mod retry;
pub mod testing;
mod worker;

pub use client::{redact_url, Jobs, JobsBuilder};
pub use context::{FromJobContext, JobContext, JobInfo, MissingState, State, StateRequirement};
pub use dead::{DeadLetter, DeadLetters};
pub use enqueue::{BackendKind, Enqueue, EnqueueTx, Enqueuer, JobId, Pg, Sidekiq, Sqlite};
pub use envelope::Envelope;
pub use error::{BoxError, Error};
pub use processor::{PgProcessor, Processor, ProcessorBuilder, SidekiqProcessor, SqliteProcessor};
pub use retry::{backoff, MAX_BACKOFF};
pub use worker::{Worker, WorkerConfig};

/// Turns an `async fn` into a background-job worker.
///
/// ```
/// use jobs::{worker, JobInfo, Pg, State};
///
/// #[derive(Clone)]
/// struct App;
///
/// #[worker(enqueuer = Pg, queue = "mailers", max_retries = 3, retry_delay = "500ms", timeout = "30s")]
/// pub async fn send_digest(user_id: u64, State(app): State<App>, info: JobInfo) -> anyhow::Result<()> {
///     Ok(())
/// }
/// // Generated: `pub struct SendDigest`, `impl jobs::Worker for SendDigest`, the helpers
/// // `SendDigest::enqueue`, `enqueue_in`, `enqueue_batch`, `enqueue_tx`, and a registration.
/// assert_eq!(<SendDigest as jobs::Worker>::CONFIG.queue, "mailers");
/// ```
///
/// Arguments:
/// - `enqueuer` (required): the backend, `Pg`, `Sidekiq` or `Sqlite`.
/// - `drain`: backends this worker moved away from whose leftover jobs still run:
///   `drain = Sidekiq` or `drain = [Sidekiq, …]`.
/// - `queue`: the queue name (default `"default"`): lowercase letters, digits, `_`, at most 47.
/// - `name`: the stable job name stored with each job (default: the generated type's name).
/// - `max_retries`: retries after the first failure before the job is dead-lettered (default 25).
/// - `retry_delay`: the backoff base, a duration such as `"50ms"` or `"2s"` (default `"1s"`).
/// - `timeout`: the limit of one run (default: none).
///
/// The fn takes the args first (any `Serialize + DeserializeOwned` type), then any extractors
/// ([`State<S>`], [`JobInfo`], or a [`FromJobContext`] type of yours), and returns
/// `Result<(), E>` for an `E: std::error::Error + Send + Sync + 'static` or `anyhow::Error`.
pub use jobs_macros::worker;

#[doc(hidden)]
pub mod __private {
    pub use crate::registry::Registration;
    pub use inventory;

    /// Boxes a handler's error, whatever its type.
    pub fn into_result<E: Into<crate::BoxError>>(
        result: Result<(), E>,
    ) -> Result<(), crate::BoxError> {
        result.map_err(Into::into)
    }
}
