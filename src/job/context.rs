//! What every worker of a job shares: the plan, the stores, the tokenizers, the output, the
//! checkpoint to resume from, and the stop flag that signals set.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;
use wrapflow_operators::io::store::{Location, StoreRegistry};
use wrapflow_operators::{Chunker, MixStageConfig};

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
}
