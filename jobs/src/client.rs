//! `Jobs`: the connections, the state, the settings, and the process-wide default client.

use crate::backend::pg::PgBackend;
use crate::backend::sidekiq::SidekiqBackend;
use crate::backend::sqlite::SqliteBackend;
use crate::backend::Backend;
use crate::context::StateMap;
use crate::processor::{Processor, Settings, DEFAULT_MAX_PAYLOAD};
use crate::registry::Registry;
use crate::{BackendKind, DeadLetters, Enqueuer, Envelope, Error, JobId, Worker};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static DEFAULT: RwLock<Option<Jobs>> = RwLock::new(None);

/// The most a queue name may have; pgmq's limit.
const MAX_QUEUE_LEN: usize = 47;
/// The longest an enqueue waits for a connection, e.g. while the server is down.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The jobs client: enqueues, runs the processors, and manages dead letters.
///
/// Cheap to clone. [`JobsBuilder::connect`] makes it the default that the generated
/// `X::enqueue` helpers use.
///
/// ```no_run
/// use jobs::{worker, Jobs, Pg};
/// use tokio_util::sync::CancellationToken;
///
/// #[worker(enqueuer = Pg)]
/// async fn ping(n: u64) -> anyhow::Result<()> { Ok(()) }
///
/// # async fn demo() -> anyhow::Result<()> {
/// let jobs = Jobs::builder().postgres("postgres://localhost/app").connect().await?;
/// Ping::enqueue(1).await?;
/// jobs.run(CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    backends: HashMap<BackendKind, Arc<dyn Backend>>,
    pg: Option<Arc<PgBackend>>,
    state: Arc<StateMap>,
    /// The workers this client processes (all, or those on the builder's `queues`).
    served: Registry,
    settings: Settings,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("backends", &self.inner.backends.keys().collect::<Vec<_>>())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Configures and connects a [`Jobs`].
///
/// ```no_run
/// # async fn demo() -> Result<(), jobs::Error> {
/// #[derive(Clone)]
/// struct App;
/// let jobs = jobs::Jobs::builder()
///     .postgres("postgres://localhost/app")
///     .state(App)
///     .concurrency(32)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct JobsBuilder {
    postgres_url: Option<String>,
    redis_url: Option<String>,
    sqlite_url: Option<String>,
    postgres_pool: Option<PgPool>,
    state: StateMap,
    queues: Option<Vec<String>>,
    settings: Settings,
}

impl std::fmt::Debug for JobsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = |url: &Option<String>| url.as_deref().map(redact_url);
        f.debug_struct("JobsBuilder")
            .field("postgres_url", &url(&self.postgres_url))
            .field("redis_url", &url(&self.redis_url))
            .field("sqlite_url", &url(&self.sqlite_url))
            .field("postgres_pool", &self.postgres_pool.is_some())
            .field("queues", &self.queues)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// Starts configuring a client.
    pub fn builder() -> JobsBuilder {
        JobsBuilder {
            postgres_url: None,
            redis_url: None,
            sqlite_url: None,
            postgres_pool: None,
            state: StateMap::default(),
            queues: None,
            settings: Settings::default(),
        }
    }

    /// The default client: the one connected last.
    pub fn current() -> Result<Self, Error> {
        DEFAULT
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(Error::NotConnected)
    }

    /// Makes this client the default for the generated enqueue helpers.
    pub fn make_default(&self) {
        *DEFAULT
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(self.clone());
    }

    pub(crate) fn backend(&self, kind: BackendKind) -> Result<&Arc<dyn Backend>, Error> {
        self.inner.backends.get(&kind).ok_or(Error::NotConfigured {
            backend: kind,
            method: kind.builder_method(),
        })
    }

    fn backend_for<W: Worker>(&self) -> Result<&Arc<dyn Backend>, Error> {
        let kind = <W::Enqueuer as Enqueuer>::BACKEND;
        self.inner
            .backends
            .get(&kind)
            .ok_or_else(|| Error::BackendNotConfigured {
                worker: W::NAME.to_owned(),
                backend: kind,
                method: kind.builder_method(),
            })
    }

    pub(crate) fn state(&self) -> Arc<StateMap> {
        self.inner.state.clone()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The pool of the Postgres backend, if configured.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        self.inner.pg.as_deref().map(PgBackend::pool)
    }

    /// Enqueues one job of worker `W` now.
    pub async fn enqueue<W: Worker>(&self, args: W::Args) -> Result<JobId, Error> {
        let mut ids = self
            .push::<W>(vec![payload::<W>(args, self.settings().max_payload)?], None)
            .await?;
        ids.pop().ok_or(Error::Postgres(sqlx::Error::RowNotFound))
    }

    /// Enqueues one job of worker `W` to run once `delay` has passed.
    pub async fn enqueue_in<W: Worker>(
        &self,
        delay: Duration,
        args: W::Args,
    ) -> Result<JobId, Error> {
        let mut ids = self
            .push::<W>(
                vec![payload::<W>(args, self.settings().max_payload)?],
                Some(delay),
            )
            .await?;
        ids.pop().ok_or(Error::Postgres(sqlx::Error::RowNotFound))
    }

    /// Enqueues many jobs of worker `W` in one round trip.
    pub async fn enqueue_batch<W: Worker>(
        &self,
        args: impl IntoIterator<Item = W::Args>,
    ) -> Result<Vec<JobId>, Error> {
        let limit = self.settings().max_payload;
        let payloads = args
            .into_iter()
            .map(|args| payload::<W>(args, limit))
            .collect::<Result<Vec<_>, _>>()?;
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        self.push::<W>(payloads, None).await
    }

    pub(crate) async fn push<W: Worker>(
        &self,
        payloads: Vec<serde_json::Value>,
        delay: Option<Duration>,
    ) -> Result<Vec<JobId>, Error> {
        if let Some(captured) = crate::testing::capture(W::CONFIG.queue, &payloads, delay) {
            return captured;
        }
        self.backend_for::<W>()?
            .push(W::CONFIG.queue, payloads, delay)
            .await
    }

    /// Runs a processor for each configured backend that has workers, until `shutdown` is
    /// cancelled and the running jobs have finished or been released.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut kinds: Vec<BackendKind> = self
            .inner
            .served
            .iter()
            .flat_map(|r| r.backends())
            .collect();
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            return Err(Error::NoWorkers(BackendKind::Pg));
        }
        let processors = kinds
            .into_iter()
            .map(|kind| {
                let mut registry = self.inner.served.clone();
                registry.retain(|r| r.runs_on(kind));
                Processor::new(self, kind, registry, self.inner.settings.clone())
                    .map(|p| p.run(shutdown.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        futures_util::future::try_join_all(processors).await?;
        Ok(())
    }

    /// The dead letters of one backend.
    pub fn dead_letters(&self, backend: BackendKind) -> Result<DeadLetters, Error> {
        Ok(DeadLetters::new(self.backend(backend)?.clone()))
    }
}

/// The stored JSON of one job of `W`, refused when its queue name is invalid or it is over
/// `max_payload` bytes.
pub(crate) fn payload<W: Worker>(
    args: W::Args,
    max_payload: usize,
) -> Result<serde_json::Value, Error> {
    check_queue(W::CONFIG.queue)?;
    let args = serde_json::to_value(args).map_err(Error::Serialize)?;
    let payload = serde_json::to_value(Envelope::new(W::NAME, args)).map_err(Error::Serialize)?;
    let mut size = ByteCount(0);
    serde_json::to_writer(&mut size, &payload).map_err(Error::Serialize)?;
    if size.0 > max_payload {
        return Err(Error::PayloadTooLarge {
            worker: W::NAME.to_owned(),
            size: size.0,
            limit: max_payload,
        });
    }
    Ok(payload)
}

/// `url` as it may be printed: any password replaced by `***`.
///
/// ```
/// # use jobs::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
/// assert_eq!(redact_url("redis://:s3cret@cache:6379"), "redis://:***@cache:6379");
/// assert_eq!(redact_url("postgres://db/app?sslpassword=s3cret&sslmode=require"),
///            "postgres://db/app?sslpassword=***&sslmode=require");
/// assert_eq!(redact_url("sqlite://jobs.db"), "sqlite://jobs.db");
/// ```
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Fails only for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            // Passwords given as options, e.g. `?password=…` or `?sslpassword=…`.
            if parsed
                .query_pairs()
                .any(|(key, _)| key.contains("password"))
            {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if key.contains("password") {
                            "***".to_owned()
                        } else {
                            value.into_owned()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Unparsable: print nothing of it that could be a secret.
        Err(_) => match url.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_owned(),
        },
    }
}

/// The payload limit of the default client, for the enqueue helpers.
pub(crate) fn default_max_payload() -> usize {
    Jobs::current().map_or(DEFAULT_MAX_PAYLOAD, |jobs| jobs.settings().max_payload)
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks a queue name against what every backend can store.
pub(crate) fn check_queue(queue: &str) -> Result<(), Error> {
    let valid = !queue.is_empty()
        && queue.len() <= MAX_QUEUE_LEN
        && queue
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidQueue(queue.to_owned()))
    }
}

impl JobsBuilder {
    /// Uses PostgreSQL at `url` (a pool of 10 connections).
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.postgres_url = Some(url.into());
        self
    }

    /// Uses Redis at `url`, in Sidekiq's layout, for workers with `enqueuer = Sidekiq`.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Uses the SQLite file at `url` (e.g. `sqlite://jobs.db`, created with its schema if
    /// missing) for workers with `enqueuer = Sqlite`.
    pub fn sqlite(mut self, url: impl Into<String>) -> Self {
        self.sqlite_url = Some(url.into());
        self
    }

    /// Uses PostgreSQL through the caller's pool.
    pub fn postgres_pool(mut self, pool: PgPool) -> Self {
        self.postgres_pool = Some(pool);
        self
    }

    /// Adds application state, given to handlers that take `State<S>`. One value per type.
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, state: S) -> Self {
        self.state.insert(state);
        self
    }

    /// Processes only the workers of these queues (by default, every worker's queue).
    pub fn queues<Q: Into<String>>(mut self, queues: impl IntoIterator<Item = Q>) -> Self {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Serves `queue` `weight` times as often as a queue of weight 1 (the default): each fetch
    /// picks the queue order at random, weighted, so that no queue starves another.
    pub fn queue_weight(mut self, queue: impl Into<String>, weight: u32) -> Self {
        self.settings.queue_weights.insert(queue.into(), weight);
        self
    }

    /// How many jobs each processor runs at once (default 16).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.settings.concurrency = concurrency.max(1);
        self
    }

    /// How long a fetched job stays claimed without news from its processor (default 30 s);
    /// running jobs have their lease extended, so this bounds how late a crashed processor's
    /// jobs run again, not how long a job may take.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How long shutdown waits for running jobs before releasing them (default 25 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// The longest an idle processor sleeps before looking for work without being woken
    /// (default 5 s). Notifications and the time of the next scheduled job wake it sooner.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// Retries and backoff base for jobs naming a worker this program does not know
    /// (default 25 retries, 1 s): a newer deploy may know it.
    pub fn unknown_worker_retries(mut self, max_retries: u32, retry_delay: Duration) -> Self {
        self.settings.unknown_worker = crate::WorkerConfig::DEFAULT
            .max_retries(max_retries)
            .retry_delay(retry_delay);
        self
    }

    /// The largest job, in bytes of stored JSON, that may be enqueued or run (default 1 MiB).
    /// Enqueuing a bigger one fails with [`Error::PayloadTooLarge`]; one found in storage at
    /// over twice the limit (written by other means) is dead-lettered without running. Keep
    /// args small: ids, not documents.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.settings.max_payload = bytes;
        self
    }

    /// Lets job args appear in logs (default off: args may hold personal data or secrets).
    /// When on, failure and dead-letter log lines carry an `args` field.
    pub fn log_args(mut self, on: bool) -> Self {
        self.settings.log_args = on;
        self
    }

    /// Connects, checks the workers, installs pgmq's SQL, creates the queues, and becomes the
    /// default client.
    pub async fn connect(self) -> Result<Jobs, Error> {
        let registry = Registry::discovered()?;
        let mut served = registry.clone();
        if let Some(queues) = &self.queues {
            for queue in queues {
                check_queue(queue)?;
            }
            served.retain(|r| queues.iter().any(|q| q == r.config.queue));
        }

        let pg_pool = match (self.postgres_pool, self.postgres_url) {
            (Some(pool), _) => Some(pool),
            (None, Some(url)) => {
                let pool = PgPoolOptions::new()
                    .max_connections(10)
                    // Bounds how long an enqueue waits while PostgreSQL is unreachable.
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(&url)
                    .await
                    .map_err(|err| Error::connect(BackendKind::Pg, &url, err.into()))?;
                tracing::info!(url = %redact_url(&url), "connected to PostgreSQL");
                Some(pool)
            }
            (None, None) => None,
        };
        let pg = match pg_pool {
            Some(pool) => Some(Arc::new(PgBackend::new(pool).await)),
            None => None,
        };
        let mut backends: HashMap<BackendKind, Arc<dyn Backend>> = HashMap::new();
        if let Some(pg) = &pg {
            backends.insert(BackendKind::Pg, pg.clone());
        }
        if let Some(url) = &self.sqlite_url {
            backends.insert(
                BackendKind::Sqlite,
                Arc::new(
                    SqliteBackend::connect(url)
                        .await
                        .map_err(|err| Error::connect(BackendKind::Sqlite, url, err))?,
                ),
            );
            tracing::info!(url = %redact_url(url), "opened SQLite");
        }
        if let Some(url) = &self.redis_url {
            backends.insert(
                BackendKind::Sidekiq,
                Arc::new(
                    SidekiqBackend::connect(url)
                        .await
                        .map_err(|err| Error::connect(BackendKind::Sidekiq, url, err))?,
                ),
            );
            tracing::info!(url = %redact_url(url), "connected to Redis");
        }

        for registration in served.iter() {
            if let Some(missing) = registration.backends().find(|b| !backends.contains_key(b)) {
                return Err(Error::BackendNotConfigured {
                    worker: registration.name.to_owned(),
                    backend: missing,
                    method: missing.builder_method(),
                });
            }
            registration.check(&self.state)?;
        }

        for (kind, backend) in &backends {
            let mut queues: Vec<String> = registry
                .iter()
                .filter(|r| r.runs_on(*kind) && check_queue(r.config.queue).is_ok())
                .map(|r| r.config.queue.to_owned())
                .chain(self.queues.iter().flatten().cloned())
                .collect();
            queues.sort();
            queues.dedup();
            backend.prepare(&queues).await?;
        }

        let jobs = Jobs {
            inner: Arc::new(Inner {
                backends,
                pg,
                state: Arc::new(self.state),
                served,
                settings: self.settings,
            }),
        };
        jobs.make_default();
        Ok(jobs)
    }
}
