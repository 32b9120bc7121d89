//! What every worker of a job shares: the plan, the stores, the tokenizers, the output, the
//! checkpoint to resume from, and the stop flag that signals set.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;
use wrapflow_operators::io::store::{Location, StoreRegistry};
use wrapflow_operators::{Chunker, MixStageConfig};

use crate::job::Fault;
use crate::job::checkpoint::{Commit, WorkerIndex};
use crate::job::follow::Limits;
use crate::job::progress::Progress;
use crate::plan::Plan;

/// Set by SIGINT / SIGTERM (see `run::stop_on_signal`): the job stops at its next checkpoint.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The checkpoint a job resumes from, with every worker's saved index.
pub(crate) struct Resume {
    pub commit: Commit,
    pub indexes: Vec<WorkerIndex>,
}

/// Everything workers share.
pub(crate) struct Shared {
    pub plan: Plan,
    pub registry: Arc<StoreRegistry>,
    pub runtime: tokio::runtime::Handle,
    pub sql_tokenizer: Option<Arc<Tokenizer>>,
    pub chunker: Arc<Chunker>,
    pub output: Location,
    pub progress: Arc<Progress>,
    pub mix: MixStageConfig,
    pub resume: Option<Resume>,
    pub follow: Option<Duration>,
    pub limits: Limits,
    pub started: String,
    pub t0: Instant,
    /// Tells this process's journal files from those of earlier attempts.
    pub run_id: String,
    /// Worker threads in this process: they share its cores.
    pub workers: usize,
    /// The first failure of any worker of the job.
    pub failure: Failure,
    /// Inputs the coordinator saw change after they were read, when the job stopped: those
    /// found since the last checkpoint belong in the stopped job's manifest too.
    pub changed_at_stop: std::sync::Mutex<Vec<crate::report::manifest::Changed>>,
    /// Write the dataset card with each manifest (process 0).
    pub card: bool,
}

/// The first failure of any worker of the job: set by a worker of this process when it fails,
/// or when another process's worker's failed report reaches this one. Every worker checks it
/// wherever it waits for the others, so that one worker's error stops them all instead of
/// leaving them waiting for input or progress that will never come.
#[derive(Clone, Default)]
pub(crate) struct Failure(Arc<OnceLock<(Option<Fault>, String)>>);

impl Failure {
    /// Records `error` unless a failure was recorded already (the first one is the cause).
    pub fn set(&self, error: &str) {
        let _ = self.0.set((None, error.to_string()));
    }

    /// [`Failure::set`] for a failure of a known kind.
    pub fn set_as(&self, fault: Option<Fault>, error: &str) {
        let _ = self.0.set((fault, error.to_string()));
    }

    /// The first failure, if any.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(|(_, e)| e.as_str())
    }

    /// The kind of the first failure, when known.
    pub fn fault(&self) -> Option<Fault> {
        self.0.get().and_then(|(f, _)| *f)
    }

    /// Fails with the first failure of any worker.
    pub fn check(&self) -> Result<(), String> {
        self.get().map_or(Ok(()), |e| Err(e.to_string()))
    }

    /// Steps the worker once (its dataflows, and so the reports of failed peers), then
    /// [`Failure::check`]s.
    pub fn step(&self, worker: &mut timely::worker::Worker) -> Result<(), String> {
        worker.step();
        self.check()
    }
}
