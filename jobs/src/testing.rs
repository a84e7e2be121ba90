//! Helpers for testing code that enqueues jobs, without a server.
//!
//! Inside [`Fake::scope`], every enqueue (the generated helpers, [`Enqueue`](crate::Enqueue),
//! `Jobs::enqueue…`, `enqueue_tx`) is captured instead of stored, whatever the worker's backend.
//! The capture is scoped to the future passed in (a tokio task-local), so tests running in
//! parallel never see each other's jobs; a task spawned inside the scope is outside it.
//! [`Fake::drain`] then runs the captured jobs inline with the real engine's rules: retries
//! (without waiting out the backoff), panics, timeouts, dead letters; each job once, however often
//! `drain` is called. `enqueue_tx` is captured when called, whether or not the transaction
//! commits.
//!
//! ```
//! use jobs::testing::Fake;
//! use jobs::{worker, Pg};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Welcome { user_id: u64 }
//!
//! #[worker(enqueuer = Pg, queue = "mailers")]
//! async fn send_welcome(args: Welcome) -> anyhow::Result<()> { Ok(()) }
//!
//! async fn sign_up(user_id: u64) -> Result<(), jobs::Error> {
//!     SendWelcome::enqueue(Welcome { user_id }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let fake = Fake::new();
//! fake.scope(sign_up(7)).await.unwrap();
//! fake.assert_enqueued::<SendWelcome>(&Welcome { user_id: 7 });
//! assert_eq!(fake.count::<SendWelcome>(), 1);
//! let report = fake.drain().await;
//! assert_eq!(report.succeeded, 1);
//! # }
//! ```

use crate::backend::{Fetched, Lease, Outcome};
use crate::context::StateMap;
use crate::processor::{run_job_once, Settings};
use crate::registry::Registry;
use crate::{Envelope, Error, JobId, Worker};
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

tokio::task_local! {
    static CAPTURE: Arc<Captured>;
}

/// One captured job.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedJob {
    /// The id it was given (sequential within a [`Fake`]).
    pub id: JobId,
    /// The job name.
    pub worker: String,
    /// The queue it was enqueued to.
    pub queue: String,
    /// The args, as JSON.
    pub args: Value,
    /// The delay it was enqueued with, if any.
    pub delay: Option<Duration>,
}

#[derive(Default)]
struct Captured {
    jobs: Mutex<Vec<CapturedJob>>,
    next_id: Mutex<i64>,
    /// How many captured jobs a drain has already taken (shared by clones of the fake).
    drained: Mutex<usize>,
}

/// A drain that runs this many jobs has jobs that keep re-enqueueing themselves.
const DRAIN_LIMIT: usize = 100_000;

/// A fake backend for tests: captures enqueued jobs and runs them inline.
#[derive(Clone, Default)]
pub struct Fake {
    captured: Arc<Captured>,
    state: StateMap,
}

/// What [`Fake::drain`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainReport {
    /// Jobs that succeeded (a retried job counts once).
    pub succeeded: usize,
    /// Failed runs that were retried.
    pub retried: usize,
    /// Jobs that ended as dead letters: the job and the reason.
    pub dead: Vec<(CapturedJob, String)>,
}

impl Fake {
    /// A fake with nothing captured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds state for the handlers [`drain`](Self::drain) runs, as `JobsBuilder::state` does.
    #[must_use]
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, state: S) -> Self {
        self.state.insert(state);
        self
    }

    /// Runs `future` with every enqueue inside it captured by this fake.
    pub async fn scope<F: Future>(&self, future: F) -> F::Output {
        CAPTURE.scope(self.captured.clone(), future).await
    }

    /// Every captured job, in enqueue order.
    pub fn jobs(&self) -> Vec<CapturedJob> {
        self.captured
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The args of every captured job of `W`, decoded.
    pub fn enqueued<W: Worker>(&self) -> Vec<W::Args> {
        self.jobs()
            .into_iter()
            .filter(|job| job.worker == W::NAME)
            .filter_map(|job| serde_json::from_value(job.args).ok())
            .collect()
    }

    /// How many jobs of `W` were captured.
    pub fn count<W: Worker>(&self) -> usize {
        self.jobs()
            .iter()
            .filter(|job| job.worker == W::NAME)
            .count()
    }

    /// Panics unless a job of `W` with these args was captured, listing what was.
    #[track_caller]
    pub fn assert_enqueued<W: Worker>(&self, args: &W::Args) {
        let expected = serde_json::to_value(args).unwrap_or(Value::Null);
        let jobs = self.jobs();
        if !jobs
            .iter()
            .any(|job| job.worker == W::NAME && job.args == expected)
        {
            let seen: Vec<String> = jobs
                .iter()
                .map(|job| format!("{} {}", job.worker, job.args))
                .collect();
            panic!(
                "no `{}` job with args {expected} was enqueued; enqueued: {seen:?}",
                W::NAME
            );
        }
    }

    /// Panics if any job of `W` was captured.
    #[track_caller]
    pub fn assert_not_enqueued<W: Worker>(&self) {
        let count = self.count::<W>();
        assert!(count == 0, "{count} `{}` job(s) were enqueued", W::NAME);
    }

    /// Runs the captured jobs inline, oldest first, until none is left: jobs they enqueue are
    /// run too; failures are retried at once while retries remain, then reported as dead.
    pub async fn drain(&self) -> DrainReport {
        let registry = match Registry::discovered() {
            Ok(registry) => registry,
            Err(err) => panic!("{err}"),
        };
        let state = Arc::new(self.state.clone());
        let settings = Settings::default();
        let mut report = DrainReport::default();
        let mut pending: VecDeque<(CapturedJob, Value)> = VecDeque::new();
        let mut runs = 0;
        loop {
            {
                let jobs = self
                    .captured
                    .jobs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let mut taken = self
                    .captured
                    .drained
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for job in &jobs[*taken..] {
                    let envelope = Envelope {
                        enqueued_at: None,
                        ..Envelope::new(job.worker.clone(), job.args.clone())
                    };
                    let payload = serde_json::to_value(envelope).unwrap_or(Value::Null);
                    pending.push_back((job.clone(), payload));
                }
                *taken = jobs.len();
            }
            let Some((job, payload)) = pending.pop_front() else {
                return report;
            };
            runs += 1;
            assert!(
                runs <= DRAIN_LIMIT,
                "drain ran {DRAIN_LIMIT} jobs without settling: a job keeps re-enqueueing itself \
                 (delays are not waited for in a drain)"
            );
            let fetched = Fetched {
                lease: Lease {
                    queue: Arc::from(job.queue.as_str()),
                    id: job.id.clone(),
                    delivery: 1,
                    raw: None,
                },
                payload: Ok(payload.clone()),
                // Sizes were checked at enqueue.
                size: 0,
                enqueued_at: None,
            };
            // Jobs the handler enqueues are captured here too.
            let outcome = self
                .scope(run_job_once(&registry, &state, &settings, &fetched))
                .await;
            match outcome {
                Outcome::Done | Outcome::Release => report.succeeded += 1,
                Outcome::Retry {
                    retry_count, error, ..
                } => {
                    report.retried += 1;
                    let mut payload = payload;
                    payload["retry_count"] = Value::from(retry_count);
                    payload["error"] = Value::from(error);
                    pending.push_front((job, payload));
                }
                Outcome::Dead { error, .. } => report.dead.push((job, error)),
            }
        }
    }
}

/// Captures `payloads` when called inside a [`Fake::scope`]; `None` outside one.
pub(crate) fn capture(
    queue: &str,
    payloads: &[Value],
    delay: Option<Duration>,
) -> Option<Result<Vec<JobId>, Error>> {
    CAPTURE
        .try_with(|captured| {
            let mut jobs = captured.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            let mut next = captured
                .next_id
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut ids = Vec::with_capacity(payloads.len());
            for payload in payloads {
                let envelope: Envelope =
                    serde_json::from_value(payload.clone()).map_err(Error::Serialize)?;
                *next += 1;
                let id = JobId::from(*next);
                jobs.push(CapturedJob {
                    id: id.clone(),
                    worker: envelope.worker,
                    queue: queue.to_owned(),
                    args: envelope.args,
                    delay,
                });
                ids.push(id);
            }
            Ok(ids)
        })
        .ok()
}
