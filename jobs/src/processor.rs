//! The one engine every backend runs on: fetch up to the free slots, run each job under its
//! timeout with panics caught, record outcomes in batches, keep leases alive, shut down cleanly.

use crate::backend::{Backend, Fetched, Lease, Outcome, Wait};
use crate::context::StateMap;
use crate::registry::{Registration, Registry, RunError};
use crate::{
    backoff, BackendKind, Envelope, Error, JobContext, JobInfo, Jobs, Worker, WorkerConfig,
};
use futures_util::FutureExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The most outcomes recorded in one backend call.
const COMPLETE_BATCH: usize = 1000;
/// How long shutdown waits for aborted jobs to unwind.
const ABORT_WAIT: Duration = Duration::from_secs(1);
/// Tries of a whole batch of outcomes before recording them one by one.
const BATCH_TRIES: u32 = 5;
/// Fetches in flight at once per processor.
const FETCHERS: usize = 2;
/// The longest pause after a backend error before trying again.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// How a processor runs; set on [`JobsBuilder`](crate::JobsBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub concurrency: usize,
    pub lease: Duration,
    pub shutdown_timeout: Duration,
    pub poll_interval: Duration,
    pub unknown_worker: WorkerConfig,
    pub queue_weights: HashMap<String, u32>,
    /// The largest stored job, in bytes, enqueued or run.
    pub max_payload: usize,
    /// Whether job args may appear in logs.
    pub log_args: bool,
}

/// The default of [`JobsBuilder::max_payload`](crate::JobsBuilder::max_payload): 1 MiB.
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// The longest failure text kept with a job; longer ones are cut.
const MAX_ERROR_LEN: usize = 4096;
/// Room for what storage adds to a job beyond its enqueued JSON: the last error (escaped) and
/// the backend's own fields.
const STORED_SLACK: usize = 64 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(5),
            unknown_worker: WorkerConfig::DEFAULT,
            queue_weights: HashMap::new(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            log_args: false,
        }
    }
}

/// Builds a Postgres processor by hand, with the workers named here only.
///
/// ```no_run
/// use jobs::{BoxError, JobContext, Jobs, Pg, PgProcessor, Worker};
/// use tokio_util::sync::CancellationToken;
///
/// struct Resize;
/// impl Worker for Resize {
///     type Args = String;
///     type Enqueuer = Pg;
///     const NAME: &'static str = "Resize";
///     async fn handle(path: String, _: JobContext) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// # async fn demo(jobs: Jobs) -> Result<(), jobs::Error> {
/// let processor = PgProcessor::builder(&jobs).register::<Resize>().concurrency(8).build()?;
/// processor.run(CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PgProcessor;

impl PgProcessor {
    /// Starts a processor of the Postgres backend.
    pub fn builder(jobs: &Jobs) -> ProcessorBuilder {
        ProcessorBuilder::new(jobs, BackendKind::Pg)
    }
}

/// Builds a Redis (Sidekiq) processor by hand, with the workers named here only. Any worker
/// can be registered, whatever its `Enqueuer`: that is how a worker that moved from Sidekiq to
/// Postgres still gets its old jobs run.
///
/// ```no_run
/// # use jobs::{Jobs, SidekiqProcessor};
/// # #[jobs::worker(enqueuer = jobs::Pg)]
/// # async fn moved(n: u64) -> anyhow::Result<()> { Ok(()) }
/// # async fn demo(jobs: Jobs) -> Result<(), jobs::Error> {
/// let processor = SidekiqProcessor::builder(&jobs).register::<Moved>().build()?;
/// processor.run(tokio_util::sync::CancellationToken::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SidekiqProcessor;

impl SidekiqProcessor {
    /// Starts a processor of the Redis backend.
    pub fn builder(jobs: &Jobs) -> ProcessorBuilder {
        ProcessorBuilder::new(jobs, BackendKind::Sidekiq)
    }
}

/// Builds an SQLite processor by hand, with the workers named here only.
#[derive(Debug, Clone, Copy)]
pub struct SqliteProcessor;

impl SqliteProcessor {
    /// Starts a processor of the SQLite backend.
    pub fn builder(jobs: &Jobs) -> ProcessorBuilder {
        ProcessorBuilder::new(jobs, BackendKind::Sqlite)
    }
}

/// A processor being configured; see [`PgProcessor::builder`].
#[must_use]
pub struct ProcessorBuilder {
    jobs: Jobs,
    kind: BackendKind,
    registry: Result<Registry, Error>,
    settings: Settings,
}

impl ProcessorBuilder {
    fn new(jobs: &Jobs, kind: BackendKind) -> Self {
        Self {
            jobs: jobs.clone(),
            kind,
            registry: Ok(Registry::default()),
            settings: jobs.settings().clone(),
        }
    }

    /// Runs jobs of `W` (whatever its `Enqueuer`: a worker that moved backends can be
    /// registered with its old one until that is drained).
    pub fn register<W: Worker>(mut self) -> Self {
        if let Ok(registry) = &mut self.registry {
            if let Err(err) = registry.add(Registration::of::<W>(file!(), line!())) {
                self.registry = Err(err);
            }
        }
        self
    }

    /// How many jobs run at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.settings.concurrency = concurrency.max(1);
        self
    }

    /// Serves `queue` `weight` times as often as a queue of weight 1 (the default).
    pub fn queue_weight(mut self, queue: impl Into<String>, weight: u32) -> Self {
        self.settings.queue_weights.insert(queue.into(), weight);
        self
    }

    /// Checks the workers and builds the processor.
    pub fn build(self) -> Result<Processor, Error> {
        Processor::new(&self.jobs, self.kind, self.registry?, self.settings)
    }
}

/// A running engine over one backend. Built by [`Jobs::run`] or a processor builder.
pub struct Processor {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Arc<dyn Backend>,
    registry: Registry,
    queues: Vec<String>,
    state: Arc<StateMap>,
    settings: Settings,
    /// Leases of the jobs running now, for the lease keeper and for release at shutdown.
    running: Mutex<HashMap<u64, Lease>>,
    /// Leases of jobs whose outcome is on its way to the backend: still claimed by this
    /// process, so the lease keeper keeps them too. Locked after `running` when both are.
    unrecorded: Mutex<HashMap<u64, Lease>>,
    /// Held while recording outcomes and while extending leases, so that an extension read
    /// before a job finished cannot land after its outcome and undo a retry delay or a release.
    writes: tokio::sync::Mutex<()>,
}

/// An outcome on its way to the completer: the job's key in [`Shared::unrecorded`], its lease,
/// and what became of it.
type Pending = (u64, Lease, Outcome);

impl Shared {
    /// Marks a job's outcome as on its way (call while holding `running`).
    fn unrecorded(&self, key: u64, lease: &Lease) {
        self.unrecorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, lease.clone());
    }

    /// Forgets jobs whose outcomes were recorded (call while holding `writes`, so the lease
    /// keeper never extends a lease after its outcome landed).
    fn recorded(&self, keys: &[u64]) {
        let mut unrecorded = self
            .unrecorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            unrecorded.remove(key);
        }
    }
}

impl Processor {
    pub(crate) fn new(
        jobs: &Jobs,
        kind: BackendKind,
        registry: Registry,
        settings: Settings,
    ) -> Result<Self, Error> {
        if registry.is_empty() {
            return Err(Error::NoWorkers(kind));
        }
        let state = jobs.state();
        for registration in registry.iter() {
            registration.check(&state)?;
        }
        let queues = registry.queues();
        Ok(Self {
            shared: Arc::new(Shared {
                backend: jobs.backend(kind)?.clone(),
                registry,
                queues,
                state,
                settings,
                running: Mutex::new(HashMap::new()),
                unrecorded: Mutex::new(HashMap::new()),
                writes: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Processes jobs until `shutdown` is cancelled; then stops fetching, waits for running
    /// jobs up to the shutdown timeout, and releases the rest so they run again at once.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let shared = self.shared;
        // A backend that is down at start is waited for, as one that goes down later is.
        let mut errors = 0;
        while let Err(err) = shared.backend.prepare(&shared.queues).await {
            if !err.is_unavailable() {
                return Err(err);
            }
            errors += 1;
            let pause = backoff(Duration::from_millis(100), errors).min(MAX_ERROR_PAUSE);
            tracing::warn!(error = %err, retry_in = ?pause, "backend unavailable at start");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let stop_helpers = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(shared.backend.listen(
            shared.queues.clone(),
            wake.clone(),
            stop_helpers.clone(),
        ));
        let completer = tokio::spawn(complete(shared.clone(), outcome_rx));
        // Stops the listener and the lease keeper even if this future is dropped midway.
        let _stop_on_drop = stop_helpers.clone().drop_guard();
        let keeper = tokio::spawn(keep_leases(shared.clone(), stop_helpers.clone()));

        let mut tasks = fetch_loop(&shared, &shutdown, &wake, &outcomes).await;

        let drained = tokio::time::timeout(shared.settings.shutdown_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "shutdown timeout reached; releasing the jobs still running"
            );
            tasks.abort_all();
            // A handler blocking its thread ignores the abort: do not wait for it forever.
            let aborted = tokio::time::timeout(ABORT_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if aborted.is_err() {
                tracing::error!("a job ignores cancellation (it blocks its thread); its lease is released anyway");
            }
        }
        {
            let mut running = shared
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (key, lease) in running.drain() {
                shared.unrecorded(key, &lease);
                let _ = outcomes.send((key, lease, Outcome::Release));
            }
        }
        drop(outcomes);
        let abort = completer.abort_handle();
        if tokio::time::timeout(shared.settings.shutdown_timeout, completer)
            .await
            .is_err()
        {
            abort.abort();
            tracing::error!("could not record every outcome before shutdown; those jobs run again when their lease ends");
        }
        stop_helpers.cancel();
        let _ = listener.await;
        let _ = keeper.await;
        Ok(())
    }
}

/// Fetches and starts jobs until `shutdown`, with [`FETCHERS`] fetches in flight so that one
/// round trip overlaps the next; returns the jobs still running.
async fn fetch_loop(
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    wake: &Arc<Notify>,
    outcomes: &mpsc::UnboundedSender<Pending>,
) -> JoinSet<()> {
    let slots = Arc::new(Semaphore::new(shared.settings.concurrency));
    let tasks = Arc::new(Mutex::new(JoinSet::new()));
    let next_key = Arc::new(AtomicU64::new(0));
    let fetchers = (0..FETCHERS.min(shared.settings.concurrency)).map(|_| {
        let fetcher = Fetcher {
            shared: shared.clone(),
            slots: slots.clone(),
            tasks: tasks.clone(),
            next_key: next_key.clone(),
            outcomes: outcomes.clone(),
        };
        fetcher.run(shutdown.clone(), wake.clone())
    });
    futures_util::future::join_all(fetchers).await;
    let mut tasks = tasks.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::take(&mut *tasks)
}

/// One fetch loop; several share the slots.
struct Fetcher {
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tasks: Arc<Mutex<JoinSet<()>>>,
    next_key: Arc<AtomicU64>,
    outcomes: mpsc::UnboundedSender<Pending>,
}

impl Fetcher {
    async fn run(self, shutdown: CancellationToken, wake: Arc<Notify>) {
        let shared = &self.shared;
        let mut errors = 0u32;
        let mut queues = shared.queues.clone();
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = self.slots.clone().acquire_owned() => permit,
            };
            let Ok(mut permits) = first else { break };
            // Claim every free slot at once: a fetch never asks for more than can run now.
            if let Ok(more) = self
                .slots
                .clone()
                .try_acquire_many_owned(u32::try_from(self.slots.available_permits()).unwrap_or(0))
            {
                permits.merge(more);
            }
            // Not raced against shutdown: a fetch dropped mid-flight would leave its jobs claimed.
            let fetched = match shared
                .backend
                .fetch(&queues, permits.num_permits(), shared.settings.lease)
                .await
            {
                Ok(fetched) => {
                    errors = 0;
                    fetched
                }
                Err(err) => {
                    errors += 1;
                    let pause = backoff(Duration::from_millis(100), errors).min(MAX_ERROR_PAUSE);
                    tracing::warn!(error = %err, retry_in = ?pause, "fetching jobs failed");
                    drop(permits);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let fetched = if fetched.is_empty() {
                idle(shared, &queues, &shutdown, &wake).await
            } else {
                fetched
            };
            if fetched.is_empty() {
                continue;
            }
            // Each fetch serves the queues in a new weighted random order, so no queue starves.
            weighted_order(&mut queues, &shared.settings.queue_weights);
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            while tasks.try_join_next().is_some() {}
            for job in fetched {
                let Some(permit) = permits.split(1) else {
                    break;
                };
                let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                shared
                    .running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, job.lease.clone());
                tasks.spawn(run_job(
                    shared.clone(),
                    job,
                    key,
                    permit,
                    self.outcomes.clone(),
                ));
            }
        }
    }
}

/// Shuffles `queues` so that a queue comes first with a chance proportional to its weight
/// (default 1), as Sidekiq's weighted queues do (Efraimidis–Spirakis: sort by `u^(1/w)`).
fn weighted_order(queues: &mut [String], weights: &HashMap<String, u32>) {
    if queues.len() < 2 {
        return;
    }
    let mut keyed: Vec<(f64, String)> = queues
        .iter()
        .map(|queue| {
            let weight = f64::from(weights.get(queue).copied().unwrap_or(1).max(1));
            (fastrand::f64().powf(1.0 / weight), queue.clone())
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (slot, (_, queue)) in queues.iter_mut().zip(keyed) {
        *slot = queue;
    }
}

/// Waits for work when a fetch found none: the backend blocks, or sleeps until woken, a
/// scheduled job is due or the poll interval ends. May return a job it claimed while waiting
/// (never more than one, and the caller holds at least one free slot).
async fn idle(
    shared: &Shared,
    queues: &[String],
    shutdown: &CancellationToken,
    wake: &Notify,
) -> Vec<Fetched> {
    let wait = Wait {
        queues,
        poll: shared.settings.poll_interval,
        wake,
        shutdown,
    };
    match shared.backend.idle(wait).await {
        Ok(fetched) => fetched,
        Err(err) => {
            tracing::warn!(error = %err, "waiting for jobs failed");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = shutdown.cancelled() => {}
            }
            Vec::new()
        }
    }
}

async fn run_job(
    shared: Arc<Shared>,
    job: Fetched,
    key: u64,
    permit: OwnedSemaphorePermit,
    outcomes: mpsc::UnboundedSender<Pending>,
) {
    let outcome = run_job_once(&shared.registry, &shared.state, &shared.settings, &job).await;
    // Removal and send happen together (no await between), so shutdown either sees the job as
    // running and releases it, or sees its outcome queued: never both, never neither.
    let mut running = shared
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    running.remove(&key);
    shared.unrecorded(key, &job.lease);
    let _ = outcomes.send((key, job.lease, outcome));
    drop(running);
    drop(permit);
}

/// Decodes and runs one job under its worker's rules, and decides what becomes of it. Shared by
/// the processors and by [`testing`](crate::testing)'s inline drain.
pub(crate) async fn run_job_once(
    registry: &Registry,
    state: &Arc<StateMap>,
    settings: &Settings,
    job: &Fetched,
) -> Outcome {
    let malformed = |error: String| {
        tracing::error!(queue = %job.lease.queue, job = %job.lease.id, %error, "malformed job; dead-lettering it");
        Outcome::Dead {
            error: storable(error),
            attempts: u32::try_from(job.lease.delivery).unwrap_or(0),
            worker: None,
        }
    };
    // The stored form may be wider than the JSON checked at enqueue (`jsonb` prints spaces,
    // Sidekiq adds fields, a retry adds its error): only a job far past the limit was not
    // enqueued through us.
    let stored_limit = settings
        .max_payload
        .saturating_mul(2)
        .saturating_add(STORED_SLACK);
    if job.size > stored_limit {
        return malformed(format!(
            "job of {} bytes is over twice the limit of {} bytes (JobsBuilder::max_payload)",
            job.size, settings.max_payload
        ));
    }
    let envelope: Envelope = match &job.payload {
        Err(reason) => return malformed(format!("malformed job: {reason}")),
        Ok(payload) => match Envelope::deserialize(payload) {
            Ok(envelope) => envelope,
            Err(err) => return malformed(format!("invalid job envelope: {err}")),
        },
    };
    let Some(registration) = registry.get(&envelope.worker) else {
        let error = format!("unknown worker `{}`", envelope.worker);
        return failed(&settings.unknown_worker, settings, job, &envelope, error);
    };
    let info = JobInfo {
        id: job.lease.id.clone(),
        worker: envelope.worker.clone(),
        queue: job.lease.queue.to_string(),
        attempt: envelope.retry_count.saturating_add(1),
        enqueued_at: envelope.enqueued_at.or(job.enqueued_at),
    };
    let ctx = JobContext::new(info, state.clone());
    let run = AssertUnwindSafe((registration.handler)(envelope.args.clone(), ctx)).catch_unwind();
    let result = match registration.config.timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => {
                let error = format!("timed out after {limit:?}");
                return failed(&registration.config, settings, job, &envelope, error);
            }
        },
        None => run.await,
    };
    match result {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(RunError::Args(err))) => {
            let error = storable(format!("invalid args for `{}`: {err}", envelope.worker));
            // serde's message may quote the args: logged only when the user opted in.
            if settings.log_args {
                tracing::error!(queue = %job.lease.queue, job = %job.lease.id, worker = %envelope.worker,
                    args = %envelope.args, %error, "args do not decode; dead-lettering job");
            } else {
                tracing::error!(queue = %job.lease.queue, job = %job.lease.id, worker = %envelope.worker,
                    "args do not decode into the worker's `Args`; dead-lettering job (the reason is kept with the dead letter)");
            }
            Outcome::Dead {
                error,
                attempts: envelope.retry_count.saturating_add(1),
                worker: Some(envelope.worker),
            }
        }
        Ok(Err(RunError::Failed(err))) => failed(
            &registration.config,
            settings,
            job,
            &envelope,
            error_chain(err.as_ref()),
        ),
        Err(panic) => {
            let error = format!("panicked: {}", panic_message(panic.as_ref()));
            failed(&registration.config, settings, job, &envelope, error)
        }
    }
}

/// A failed run: retry after backoff while retries remain, then dead letter.
fn failed(
    config: &WorkerConfig,
    settings: &Settings,
    job: &Fetched,
    envelope: &Envelope,
    error: String,
) -> Outcome {
    let error = storable(error);
    let retry_count = envelope.retry_count;
    // Args only with the user's consent: they may hold personal data or secrets.
    let args = settings.log_args.then_some(&envelope.args);
    if retry_count < envelope.max_retries.unwrap_or(config.max_retries) {
        let delay = backoff(config.retry_delay, retry_count);
        tracing::warn!(
            queue = %job.lease.queue, job = %job.lease.id, worker = %envelope.worker, ?args,
            attempt = retry_count + 1, retry_in = ?delay, %error, "job failed; retrying"
        );
        Outcome::Retry {
            delay,
            retry_count: retry_count + 1,
            error,
        }
    } else {
        tracing::error!(
            queue = %job.lease.queue, job = %job.lease.id, worker = %envelope.worker, ?args,
            attempts = retry_count + 1, %error, "job failed; retries exhausted, dead-lettering"
        );
        Outcome::Dead {
            error,
            attempts: retry_count.saturating_add(1),
            worker: Some(envelope.worker.clone()),
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Error text as the backends can store it: PostgreSQL text cannot hold NUL, and a reason is
/// cut to [`MAX_ERROR_LEN`] bytes so a message quoting a huge value cannot bloat every retry.
fn storable(mut error: String) -> String {
    if error.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
        error.push_str("… (cut)");
    }
    if error.contains('\0') {
        error.replace('\0', "\\0")
    } else {
        error
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload")
}

/// Records outcomes in batches, retrying the backend until it takes them. A batch that keeps
/// failing is recorded one outcome at a time, so one unrecordable outcome cannot block the rest
/// (its job is not deleted: it runs again when its lease ends).
async fn complete(shared: Arc<Shared>, mut outcomes: mpsc::UnboundedReceiver<Pending>) {
    let mut received = Vec::with_capacity(COMPLETE_BATCH);
    while outcomes.recv_many(&mut received, COMPLETE_BATCH).await > 0 {
        let (keys, batch): (Vec<u64>, Vec<(Lease, Outcome)>) = received
            .drain(..)
            .map(|(key, lease, outcome)| (key, (lease, outcome)))
            .unzip();
        let mut errors = 0;
        loop {
            // Held per try, not across the pause, so leases keep being extended meanwhile.
            let writing = shared.writes.lock().await;
            let Err(err) = shared.backend.complete(&batch).await else {
                shared.recorded(&keys);
                break;
            };
            drop(writing);
            errors += 1;
            // An unreachable backend is waited out (shutdown bounds the wait); an outcome the
            // backend keeps refusing is tried alone, so it cannot hold up the others.
            if errors >= BATCH_TRIES && !err.is_unavailable() {
                let _writing = shared.writes.lock().await;
                for one in batch.chunks(1) {
                    if let Err(err) = shared.backend.complete(one).await {
                        tracing::error!(error = %err, queue = %one[0].0.queue, job = %one[0].0.id,
                            "cannot record this outcome; the job runs again when its lease ends");
                    }
                }
                // Recorded or given up: either way no longer this process's to keep.
                shared.recorded(&keys);
                break;
            }
            let pause = backoff(Duration::from_millis(100), errors).min(MAX_ERROR_PAUSE);
            tracing::warn!(error = %err, jobs = batch.len(), retry_in = ?pause, "recording outcomes failed");
            tokio::time::sleep(pause).await;
        }
    }
}

/// Extends the leases of running jobs every third of a lease.
async fn keep_leases(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.settings.lease / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let writing = shared.writes.lock().await;
        let leases: Vec<Lease> = {
            let running = shared
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let unrecorded = shared
                .unrecorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            running
                .values()
                .chain(unrecorded.values())
                .cloned()
                .collect()
        };
        // Called with no leases too: for Redis it is this process's heartbeat.
        if let Err(err) = shared.backend.extend(&leases, shared.settings.lease).await {
            tracing::warn!(error = %err, jobs = leases.len(), "extending leases failed");
        }
        drop(writing);
        if let Err(err) = shared.backend.maintain(shared.settings.lease).await {
            tracing::warn!(error = %err, "backend maintenance failed");
        }
    }
}
