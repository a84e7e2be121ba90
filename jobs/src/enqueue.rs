//! Enqueuing: the backend markers, job ids, and the helpers every worker gets.

use crate::{Error, Jobs, Worker};
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// The storage a worker's jobs go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendKind {
    /// PostgreSQL through pgmq.
    Pg,
    /// Redis, in Sidekiq's layout.
    Sidekiq,
    /// An SQLite file, embedded: no server.
    Sqlite,
}

impl BackendKind {
    /// The builder method that configures this backend.
    pub(crate) fn builder_method(self) -> &'static str {
        match self {
            Self::Pg => "postgres",
            Self::Sidekiq => "redis",
            Self::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pg => "Pg",
            Self::Sidekiq => "Sidekiq",
            Self::Sqlite => "Sqlite",
        })
    }
}

/// A backend that a worker can name as its `Enqueuer`.
///
/// ```
/// use jobs::{BackendKind, Enqueuer, Pg};
/// assert_eq!(<Pg as Enqueuer>::BACKEND, BackendKind::Pg);
/// ```
pub trait Enqueuer: Send + Sync + 'static {
    /// Which backend this is.
    const BACKEND: BackendKind;
}

/// The PostgreSQL backend: jobs are pgmq messages. Use as `#[worker(enqueuer = Pg)]`.
#[derive(Debug, Clone, Copy)]
pub struct Pg;

impl Enqueuer for Pg {
    const BACKEND: BackendKind = BackendKind::Pg;
}

/// The Redis backend in Sidekiq's wire format. Use as `#[worker(enqueuer = Sidekiq)]`.
#[derive(Debug, Clone, Copy)]
pub struct Sidekiq;

impl Enqueuer for Sidekiq {
    const BACKEND: BackendKind = BackendKind::Sidekiq;
}

/// The embedded SQLite backend: a file, nothing to run. Use as `#[worker(enqueuer = Sqlite)]`.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Enqueuer for Sqlite {
    const BACKEND: BackendKind = BackendKind::Sqlite;
}

/// The id a backend gave a job: a pgmq `msg_id` for Postgres, a Sidekiq `jid` for Redis.
///
/// ```
/// let id = jobs::JobId::from(42);
/// assert_eq!(id.to_string(), "42");
/// assert_eq!(id.as_i64(), Some(42));
/// assert_eq!(jobs::JobId::from("5f0c2b".to_owned()).as_i64(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    Number(i64),
    Text(std::sync::Arc<str>),
}

impl JobId {
    /// The numeric id, for backends whose ids are numbers.
    pub fn as_i64(&self) -> Option<i64> {
        match &self.0 {
            Repr::Number(n) => Some(*n),
            Repr::Text(_) => None,
        }
    }
}

impl From<i64> for JobId {
    fn from(id: i64) -> Self {
        Self(Repr::Number(id))
    }
}

impl From<String> for JobId {
    fn from(id: String) -> Self {
        Self(Repr::Text(id.into()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Number(n) => write!(f, "{n}"),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

/// A connection that can enqueue inside its open transaction for backend `E`: for Postgres,
/// `&mut PgConnection` (write `&mut *tx` for a `sqlx::Transaction`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot enqueue transactionally for backend `{E}`",
    label = "pass `&mut *tx` of a transaction of this worker's backend"
)]
pub trait EnqueueTx<E: Enqueuer>: Send {
    /// Sends `payloads` to `queue` on this connection.
    fn push_tx(
        self,
        queue: &str,
        payloads: Vec<serde_json::Value>,
    ) -> impl Future<Output = Result<Vec<JobId>, Error>> + Send;
}

/// The enqueue helpers, for every [`Worker`]. `#[worker]` also writes them as inherent
/// functions, so generated workers need no import; hand-written ones `use jobs::Enqueue`.
///
/// They enqueue through the default [`Jobs`] (the one connected last).
///
/// ```no_run
/// use jobs::{Enqueue, Pg, Worker, JobContext, BoxError};
/// # struct Resize;
/// # impl Worker for Resize {
/// #     type Args = String; type Enqueuer = Pg; const NAME: &'static str = "Resize";
/// #     async fn handle(_: String, _: JobContext) -> Result<(), BoxError> { Ok(()) }
/// # }
/// # async fn demo() -> Result<(), jobs::Error> {
/// let id = Resize::enqueue("cat.png".to_owned()).await?;
/// # Ok(()) }
/// ```
pub trait Enqueue: Worker {
    /// Enqueues one job now.
    fn enqueue(args: Self::Args) -> impl Future<Output = Result<JobId, Error>> + Send {
        let payload = crate::client::payload::<Self>(args, crate::client::default_max_payload());
        async move { first(push_default::<Self>(vec![payload?], None).await?) }
    }

    /// Enqueues one job to run once `delay` has passed.
    fn enqueue_in(
        delay: Duration,
        args: Self::Args,
    ) -> impl Future<Output = Result<JobId, Error>> + Send {
        let payload = crate::client::payload::<Self>(args, crate::client::default_max_payload());
        async move { first(push_default::<Self>(vec![payload?], Some(delay)).await?) }
    }

    /// Enqueues many jobs in one round trip.
    fn enqueue_batch(
        args: impl IntoIterator<Item = Self::Args>,
    ) -> impl Future<Output = Result<Vec<JobId>, Error>> + Send {
        let limit = crate::client::default_max_payload();
        let payloads: Result<Vec<_>, _> = args
            .into_iter()
            .map(|args| crate::client::payload::<Self>(args, limit))
            .collect();
        async move {
            let payloads = payloads?;
            if payloads.is_empty() {
                return Ok(Vec::new());
            }
            push_default::<Self>(payloads, None).await
        }
    }

    /// Enqueues one job inside the caller's open transaction.
    fn enqueue_tx<C: EnqueueTx<Self::Enqueuer>>(
        conn: C,
        args: Self::Args,
    ) -> impl Future<Output = Result<JobId, Error>> + Send {
        let payload = crate::client::payload::<Self>(args, crate::client::default_max_payload());
        async move {
            let payloads = vec![payload?];
            if let Some(captured) = crate::testing::capture(Self::CONFIG.queue, &payloads, None) {
                return first(captured?);
            }
            first(conn.push_tx(Self::CONFIG.queue, payloads).await?)
        }
    }
}

/// Pushes through a test fake when inside one, else through the default client.
async fn push_default<W: Worker>(
    payloads: Vec<serde_json::Value>,
    delay: Option<Duration>,
) -> Result<Vec<JobId>, Error> {
    if let Some(captured) = crate::testing::capture(W::CONFIG.queue, &payloads, delay) {
        return captured;
    }
    Jobs::current()?.push::<W>(payloads, delay).await
}

/// The single id of a single enqueue.
fn first(ids: Vec<JobId>) -> Result<JobId, Error> {
    ids.into_iter()
        .next()
        .ok_or(Error::Postgres(sqlx::Error::RowNotFound))
}

impl<W: Worker> Enqueue for W {}
