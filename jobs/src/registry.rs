//! Every worker of the program, collected at link time, checked, and looked up by name.

use crate::context::StateMap;
use crate::{
    BackendKind, BoxError, Enqueuer, Error, JobContext, StateRequirement, Worker, WorkerConfig,
};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::any::TypeId;
use std::collections::HashMap;

/// Why a handler did not succeed.
pub(crate) enum RunError {
    /// The args did not decode into the worker's `Args`: retrying cannot help.
    Args(serde_json::Error),
    /// The handler returned an error (or an extractor failed).
    Failed(BoxError),
}

type Handler = fn(Value, JobContext) -> BoxFuture<'static, Result<(), RunError>>;

/// One worker, as the engine knows it. Built by `#[worker]` and [`register!`](crate::register).
#[derive(Clone, Copy)]
pub struct Registration {
    pub(crate) name: &'static str,
    pub(crate) backend: BackendKind,
    /// Backends whose leftover jobs of this worker are still processed (`drain = …`).
    pub(crate) drains: &'static [BackendKind],
    pub(crate) config: WorkerConfig,
    pub(crate) handler: Handler,
    pub(crate) requirements: fn(&mut Vec<StateRequirement>),
    type_id: fn() -> TypeId,
    file: &'static str,
    line: u32,
}

inventory::collect!(Registration);

impl Registration {
    /// The registration of `W`, defined at `file:line`.
    pub const fn of<W: Worker>(file: &'static str, line: u32) -> Self {
        Self {
            name: W::NAME,
            backend: <W::Enqueuer as Enqueuer>::BACKEND,
            drains: W::DRAIN,
            config: W::CONFIG,
            handler: run_erased::<W>,
            requirements: W::requirements,
            type_id: TypeId::of::<W>,
            file,
            line,
        }
    }

    /// Its backend, then the backends it drains.
    pub(crate) fn backends(&self) -> impl Iterator<Item = BackendKind> + '_ {
        std::iter::once(self.backend).chain(self.drains.iter().copied())
    }

    /// Whether a processor of `kind` runs this worker's jobs.
    pub(crate) fn runs_on(&self, kind: BackendKind) -> bool {
        self.backend == kind || self.drains.contains(&kind)
    }

    /// Checks what a processor needs to run this worker: a storable queue name and its state.
    pub(crate) fn check(&self, state: &StateMap) -> Result<(), Error> {
        crate::client::check_queue(self.config.queue)?;
        let mut needs = Vec::new();
        (self.requirements)(&mut needs);
        match needs.iter().find(|n| !state.contains(n.type_id)) {
            Some(missing) => Err(Error::MissingState {
                worker: self.name.to_owned(),
                state: missing.type_name,
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

fn run_erased<W: Worker>(args: Value, ctx: JobContext) -> BoxFuture<'static, Result<(), RunError>> {
    Box::pin(async move {
        let args: W::Args = serde_json::from_value(args).map_err(RunError::Args)?;
        W::handle(args, ctx).await.map_err(RunError::Failed)
    })
}

/// Workers by job name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    by_name: HashMap<&'static str, Registration>,
}

impl Registry {
    /// Every registered worker of the program.
    pub(crate) fn discovered() -> Result<Self, Error> {
        let mut registry = Self::default();
        let mut all: Vec<Registration> = inventory::iter::<Registration>
            .into_iter()
            .copied()
            .collect();
        // Inventory's order is unspecified: sort so that errors name workers the same way every run.
        all.sort_by(|a, b| (a.file, a.line, a.name).cmp(&(b.file, b.line, b.name)));
        for registration in all {
            registry.add(registration)?;
        }
        Ok(registry)
    }

    /// Adds one worker; the same worker twice is fine, two workers with one name are not.
    pub(crate) fn add(&mut self, registration: Registration) -> Result<(), Error> {
        match self.by_name.get(registration.name) {
            Some(existing) if (existing.type_id)() == (registration.type_id)() => Ok(()),
            Some(existing) => Err(Error::DuplicateWorker {
                name: registration.name.to_owned(),
                first: existing.location(),
                second: registration.location(),
            }),
            None => {
                self.by_name.insert(registration.name, registration);
                Ok(())
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registration> {
        self.by_name.get(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.by_name.values()
    }

    pub(crate) fn retain(&mut self, keep: impl Fn(&Registration) -> bool) {
        self.by_name.retain(|_, registration| keep(registration));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The queues of these workers, sorted and without repeats.
    pub(crate) fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = self.iter().map(|r| r.config.queue.to_owned()).collect();
        queues.sort();
        queues.dedup();
        queues
    }
}

/// Registers a hand-written [`Worker`] so that processors find it, as `#[worker]` does.
///
/// ```
/// use jobs::{BoxError, JobContext, Pg, Worker};
/// pub struct Cleanup;
/// impl Worker for Cleanup {
///     type Args = ();
///     type Enqueuer = Pg;
///     const NAME: &'static str = "Cleanup";
///     async fn handle(_: (), _: JobContext) -> Result<(), BoxError> { Ok(()) }
/// }
/// jobs::register!(Cleanup);
/// ```
#[macro_export]
macro_rules! register {
    ($worker:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::Registration::of::<$worker>(::core::file!(), ::core::line!())
        }
    };
}
