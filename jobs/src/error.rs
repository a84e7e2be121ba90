//! The errors of the public API.

use crate::BackendKind;

/// What a handler returns on failure: any error, boxed. `anyhow::Error` and every
/// `std::error::Error + Send + Sync` convert into it with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from configuring, connecting, enqueuing or running.
///
/// ```
/// let err = jobs::Error::NotConnected;
/// assert!(err.to_string().contains("connect"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A generated `enqueue` helper ran before any [`Jobs`](crate::Jobs) was connected.
    #[error("no jobs client is connected: call `Jobs::builder()...connect().await` first")]
    NotConnected,
    /// A worker's backend was not configured on the builder.
    #[error("worker `{worker}` uses the {backend} backend, which is not configured: call `.{method}(…)` on `Jobs::builder()`")]
    BackendNotConfigured {
        /// The worker's name.
        worker: String,
        /// The backend it names.
        backend: BackendKind,
        /// The builder method that configures it.
        method: &'static str,
    },
    /// An operation needs a backend that was not configured.
    #[error("the {backend} backend is not configured: call `.{method}(…)` on `Jobs::builder()`")]
    NotConfigured {
        /// The backend.
        backend: BackendKind,
        /// The builder method that configures it.
        method: &'static str,
    },
    /// Two workers were registered under one job name.
    #[error(
        "two workers are named `{name}`: {first} and {second}; give one a distinct `name = \"…\"`"
    )]
    DuplicateWorker {
        /// The shared name.
        name: String,
        /// Where the first is defined.
        first: String,
        /// Where the second is defined.
        second: String,
    },
    /// A worker asks for `State<S>` but no `S` was given to the builder.
    #[error("worker `{worker}` needs state `{state}`, which was not provided: call `.state(…)` with a value of that type on `Jobs::builder()`")]
    MissingState {
        /// The worker's name.
        worker: String,
        /// The state type's name.
        state: &'static str,
    },
    /// A processor was started with no worker to run.
    #[error("the {0} processor has no workers: define one with #[worker] or register one by hand")]
    NoWorkers(BackendKind),
    /// A queue name that the backends cannot store.
    #[error("invalid queue name {0:?}: use 1 to 47 lowercase letters, digits or underscores")]
    InvalidQueue(String),
    /// A job bigger than [`JobsBuilder::max_payload`](crate::JobsBuilder::max_payload).
    #[error("a `{worker}` job of {size} bytes is over the limit of {limit} bytes: pass ids, not documents, or raise `JobsBuilder::max_payload`")]
    PayloadTooLarge {
        /// The worker's name.
        worker: String,
        /// The job's size as stored, in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The args could not be turned into JSON.
    #[error("could not serialize the job's args: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Connecting to a backend failed; the URL is shown with its password redacted.
    #[error("cannot connect to {backend} at {url}: {source}")]
    Connect {
        /// The backend.
        backend: BackendKind,
        /// Its URL, password replaced by `***`.
        url: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A database error from PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// An error from the pgmq client.
    #[error("pgmq: {0}")]
    Pgmq(#[from] pgmq::PgmqError),
    /// A dead letter that does not exist (any more).
    #[error("no dead letter with id {0}")]
    DeadLetterNotFound(String),
    /// An error from Redis.
    #[error("redis: {0}")]
    Redis(#[from] sidekiq::redis_rs::RedisError),
    /// The Redis server lacks commands the backend needs.
    #[error("Redis {0} is too old: 6.2 or newer is needed (RPOP with a count, LMOVE, BLMOVE)")]
    RedisTooOld(String),
    /// No Redis connection could be had from the pool in time.
    #[error("redis pool: {0}")]
    RedisPool(String),
}

impl Error {
    pub(crate) fn connect(backend: BackendKind, url: &str, source: Error) -> Self {
        Error::Connect {
            backend,
            url: crate::client::redact_url(url),
            source: Box::new(source),
        }
    }

    /// Whether the backend could not be reached (connection refused, lost or timed out, server
    /// shutting down or still loading): the same call can succeed later, unlike a bad job or
    /// a bad setting.
    ///
    /// ```
    /// assert!(!jobs::Error::NotConnected.is_unavailable());
    /// assert!(jobs::Error::RedisPool("timed out".into()).is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Postgres(err) | Error::Pgmq(pgmq::PgmqError::DatabaseError(err)) => {
                sql_unavailable(err)
            }
            Error::Redis(err) => redis_unavailable(err),
            Error::RedisPool(_) => true,
            Error::Connect { source, .. } => source.is_unavailable(),
            _ => false,
        }
    }
}

fn redis_unavailable(err: &sidekiq::redis_rs::RedisError) -> bool {
    use sidekiq::redis_rs::{ErrorKind, ServerErrorKind};
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        // Loading its data after a restart, or a failover in progress.
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

fn sql_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08…), operator intervention such as a shutdown or a
        // terminated backend (57P…), too many connections (53300).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}
