//! What a running job can see: its own info and the application state, through extractors.

use crate::JobId;
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// The application state given to [`JobsBuilder::state`](crate::JobsBuilder::state), by type.
#[derive(Clone, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    pub(crate) fn insert<S: Clone + Send + Sync + 'static>(&mut self, state: S) {
        self.0.insert(TypeId::of::<S>(), Arc::new(state));
    }

    pub(crate) fn contains(&self, type_id: TypeId) -> bool {
        self.0.contains_key(&type_id)
    }

    fn get<S: Clone + 'static>(&self) -> Option<S> {
        self.0
            .get(&TypeId::of::<S>())
            .and_then(|state| state.downcast_ref::<S>())
            .cloned()
    }
}

/// Facts about the job being run.
///
/// ```
/// use jobs::{worker, JobInfo, Pg};
///
/// #[worker(enqueuer = Pg)]
/// async fn audit(args: u64, info: JobInfo) -> anyhow::Result<()> {
///     println!("job {} on {}, attempt {}", info.id, info.queue, info.attempt);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// The backend's id of the job.
    pub id: JobId,
    /// The job name.
    pub worker: String,
    /// The queue it came from.
    pub queue: String,
    /// This run's number: 1 for the first run, 2 for the first retry, …
    pub attempt: u32,
    /// When the job was first enqueued, when known.
    pub enqueued_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Everything a handler can ask for: the job's [`JobInfo`] and the application state.
#[derive(Clone)]
pub struct JobContext {
    info: JobInfo,
    state: Arc<StateMap>,
}

impl JobContext {
    pub(crate) fn new(info: JobInfo, state: Arc<StateMap>) -> Self {
        Self { info, state }
    }

    /// The job being run.
    pub fn info(&self) -> &JobInfo {
        &self.info
    }

    /// The state of type `S`, if the builder was given one.
    pub fn state<S: Clone + Send + Sync + 'static>(&self) -> Option<S> {
        self.state.get::<S>()
    }
}

/// The application state of type `S`, as a handler parameter: `State(app): State<App>`.
///
/// ```
/// use jobs::{worker, Pg, State};
///
/// #[derive(Clone)]
/// struct Mailer { from: String }
///
/// #[worker(enqueuer = Pg)]
/// async fn welcome(user_id: u64, State(mailer): State<Mailer>) -> anyhow::Result<()> {
///     println!("mail from {} to user {user_id}", mailer.from);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

/// A state type some worker needs; checked when [`Jobs`](crate::Jobs) connects.
#[derive(Debug, Clone, Copy)]
pub struct StateRequirement {
    /// The type's id.
    pub type_id: TypeId,
    /// The type's name, for the error.
    pub type_name: &'static str,
}

/// An extractor could not produce its value.
#[derive(Debug, thiserror::Error)]
#[error("state `{0}` was not provided to Jobs::builder().state(…)")]
pub struct MissingState(pub &'static str);

/// A handler parameter after the args: built from the running job's context.
///
/// ```
/// use jobs::{FromJobContext, JobContext, MissingState};
///
/// struct Attempt(u32);
///
/// impl FromJobContext for Attempt {
///     fn from_context(ctx: &JobContext) -> Result<Self, MissingState> {
///         Ok(Attempt(ctx.info().attempt))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a worker parameter",
    label = "after the args, a worker fn takes extractors: `State<S>`, `JobInfo`, or a type that implements `jobs::FromJobContext`"
)]
pub trait FromJobContext: Sized {
    /// Builds the value for one run.
    fn from_context(ctx: &JobContext) -> Result<Self, MissingState>;

    /// Adds the state types this extractor needs.
    fn requirements(out: &mut Vec<StateRequirement>) {
        let _ = out;
    }
}

impl<S: Clone + Send + Sync + 'static> FromJobContext for State<S> {
    fn from_context(ctx: &JobContext) -> Result<Self, MissingState> {
        ctx.state::<S>()
            .map(State)
            .ok_or(MissingState(std::any::type_name::<S>()))
    }

    fn requirements(out: &mut Vec<StateRequirement>) {
        out.push(StateRequirement {
            type_id: TypeId::of::<S>(),
            type_name: std::any::type_name::<S>(),
        });
    }
}

impl FromJobContext for JobInfo {
    fn from_context(ctx: &JobContext) -> Result<Self, MissingState> {
        Ok(ctx.info.clone())
    }
}
