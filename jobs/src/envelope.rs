//! The wire format of a job in Postgres (and the shape the engine works with).
//!
//! A job is a JSON object; only `worker` and `args` are required, so any pgmq client can enqueue:
//! `{"worker": "PgPing", "args": {"n": 1}}`. The engine adds `retry_count` and `error` when a run
//! fails, and `enqueued_at` when it enqueues.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One job as stored: the worker's name, its args, and what earlier runs left behind.
///
/// ```
/// let env: jobs::Envelope = serde_json::from_str(r#"{"worker": "PgPing", "args": {"n": 1}}"#).unwrap();
/// assert_eq!(env.worker, "PgPing");
/// assert_eq!(env.retry_count, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The job name: the worker's `NAME` (`name = "…"` of `#[worker]`, by default its type name).
    pub worker: String,
    /// The worker's args, as JSON.
    pub args: Value,
    /// How many failed runs this job has had; absent means none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_count: u32,
    /// Retries this job gets, overriding its worker's `max_retries`; absent means the worker's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The error of the last failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the job was first enqueued (RFC 3339), when the enqueuer set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Envelope {
    /// A new job for `worker` with `args`, stamped now.
    pub fn new(worker: impl Into<String>, args: Value) -> Self {
        Self {
            worker: worker.into(),
            args,
            retry_count: 0,
            max_retries: None,
            error: None,
            enqueued_at: Some(chrono::Utc::now()),
        }
    }
}

/// A dead job's stored JSON made ready to run again: a fresh retry budget, no last error.
/// Anything that is not an envelope object is returned as it is.
pub(crate) fn with_fresh_budget(stored: Option<Value>) -> Value {
    match stored {
        Some(Value::Object(mut fields)) => {
            fields.remove("retry_count");
            fields.remove("error");
            Value::Object(fields)
        }
        other => other.unwrap_or(Value::Null),
    }
}
