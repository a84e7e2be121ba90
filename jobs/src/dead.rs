//! Dead letters: jobs that failed for good or could not be decoded, kept with their reason.

use crate::backend::Backend;
use crate::{Error, JobId};
use serde_json::Value;
use std::sync::Arc;

/// One dead job: in Postgres a row of `jobs.dead_letters`, in Redis an entry of Sidekiq's
/// `dead` set.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The dead letter's id, for [`DeadLetters::retry`] and [`DeadLetters::delete`].
    pub id: String,
    /// The queue the job was in.
    pub queue: String,
    /// The job's id in that queue.
    pub job_id: JobId,
    /// The worker it named, when the job could be read.
    pub worker: Option<String>,
    /// The stored job, exactly as it was (a malformed one too); `None` for an empty body.
    pub message: Option<Value>,
    /// Why it died: the last error.
    pub error: String,
    /// How many runs it had.
    pub attempts: u32,
    /// When it was first enqueued, when known.
    pub enqueued_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was set aside.
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

/// Lists, re-enqueues and deletes the dead letters of one backend. From
/// [`Jobs::dead_letters`](crate::Jobs::dead_letters).
///
/// ```no_run
/// # async fn demo(jobs: jobs::Jobs) -> Result<(), jobs::Error> {
/// let dead = jobs.dead_letters(jobs::BackendKind::Pg)?;
/// for letter in dead.list(Some("mailers"), 50).await? {
///     println!("{} failed {} times: {}", letter.job_id, letter.attempts, letter.error);
///     dead.retry(&letter.id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DeadLetters {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// The newest `limit` dead letters, of one queue or of all.
    pub async fn list(&self, queue: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.backend.dead_list(queue, limit).await
    }

    /// Puts a dead job back on its queue with a fresh retry budget; returns its id there.
    pub async fn retry(&self, id: &str) -> Result<JobId, Error> {
        self.backend.dead_retry(id).await
    }

    /// Deletes one dead letter for good.
    pub async fn delete(&self, id: &str) -> Result<(), Error> {
        self.backend.dead_delete(id).await
    }
}
