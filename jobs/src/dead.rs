//! Dead letters: jobs that failed for good or could not be decoded, kept with their reason.

use crate::{Error, JobId};
use serde_json::Value;
use sqlx::postgres::PgPool;

/// One dead job, as kept in `jobs.dead_letters`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadLetter {
    /// The dead letter's own id.
    pub id: i64,
    /// The queue the job was in.
    pub queue: String,
    /// The job's id in that queue.
    #[sqlx(try_from = "i64")]
    pub job_id: JobId,
    /// The worker it named, when the envelope could be read.
    pub worker: Option<String>,
    /// The stored job, exactly as it was (a malformed one too).
    pub message: Option<Value>,
    /// Why it died: the last error.
    pub error: String,
    /// How many runs it had.
    pub attempts: i32,
    /// When it was first enqueued.
    pub enqueued_at: chrono::DateTime<chrono::Utc>,
    /// When it was set aside.
    pub failed_at: chrono::DateTime<chrono::Utc>,
}

/// Lists, re-enqueues and deletes dead letters. From [`Jobs::dead_letters`](crate::Jobs::dead_letters).
///
/// ```no_run
/// # async fn demo(jobs: jobs::Jobs) -> Result<(), jobs::Error> {
/// let dead = jobs.dead_letters()?;
/// for letter in dead.list(Some("mailers"), 50).await? {
///     println!("{} failed {} times: {}", letter.job_id, letter.attempts, letter.error);
///     dead.retry(letter.id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetters {
    pool: PgPool,
}

impl DeadLetters {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The newest `limit` dead letters, of one queue or of all.
    pub async fn list(&self, queue: Option<&str>, limit: i64) -> Result<Vec<DeadLetter>, Error> {
        Ok(sqlx::query_as(
            "SELECT id, queue, job_id, worker, message, error, attempts, enqueued_at, failed_at \
             FROM jobs.dead_letters WHERE $1::text IS NULL OR queue = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(queue)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Puts a dead job back on its queue with a fresh retry budget; returns its new id.
    pub async fn retry(&self, id: i64) -> Result<JobId, Error> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, Option<Value>)> =
            sqlx::query_as("DELETE FROM jobs.dead_letters WHERE id = $1 RETURNING queue, message")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (queue, message) = row.ok_or(Error::DeadLetterNotFound(id))?;
        let message = match message {
            Some(Value::Object(mut fields)) => {
                fields.remove("retry_count");
                fields.remove("error");
                Value::Object(fields)
            }
            other => other.unwrap_or(Value::Null),
        };
        let ids = crate::backend::pg::send_on(&mut tx, &queue, vec![message], None).await?;
        tx.commit().await?;
        ids.into_iter()
            .next()
            .ok_or(Error::Postgres(sqlx::Error::RowNotFound))
    }

    /// Deletes one dead letter for good.
    pub async fn delete(&self, id: i64) -> Result<(), Error> {
        let deleted = sqlx::query("DELETE FROM jobs.dead_letters WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(Error::DeadLetterNotFound(id));
        }
        Ok(())
    }
}
