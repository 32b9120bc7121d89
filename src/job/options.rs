//! How a job runs: [`RunOptions`], the one definition of the settings every front end (the CLI's
//! flags, `Plan.run` in Python) fills in, with their defaults and checks.

use std::sync::Arc;
use std::time::Duration;

use wrapflow_operators::io::store::StoreRegistry;

use crate::job::cluster::ClusterSpec;
use crate::job::follow::Limits;
use crate::job::progress;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workers: usize,
    pub progress: progress::Mode,
    /// Stores to use (share one to reach `memory://` data); a fresh registry if `None`.
    pub registry: Option<Arc<StoreRegistry>>,
    /// This process's place in a timely cluster (`workers` threads in each process).
    pub cluster: Option<ClusterSpec>,
    /// Keep watching the sources, listing them at this interval, until stopped.
    pub follow: Option<Duration>,
    /// Input per segment: a checkpoint follows each.
    pub limits: Limits,
    /// How to treat an output that holds something else (`--force`, `--restart`).
    pub claim: crate::job::output::ClaimMode,
    /// Serve Prometheus metrics and health checks on this address while the job runs.
    pub metrics: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            progress: progress::Mode::Quiet,
            registry: None,
            cluster: None,
            follow: None,
            limits: Limits::default(),
            claim: Default::default(),
            metrics: None,
        }
    }
}

impl RunOptions {
    /// The checks every front end makes before a run (the CLI's flags name these fields).
    pub fn validate(&self) -> anyhow::Result<()> {
        let Limits { files, bytes, .. } = self.limits;
        anyhow::ensure!(files > 0 && bytes > 0, "checkpoint limits must be > 0");
        anyhow::ensure!(
            files <= crate::job::segment::MAX_SEGMENT_OBJECTS,
            "--checkpoint-files {files}: at most {} objects between checkpoints",
            crate::job::segment::MAX_SEGMENT_OBJECTS
        );
        let workers = self.workers;
        anyhow::ensure!(workers > 0, "--workers 0: a run needs at least one worker");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if workers > cores {
            tracing::warn!(
                "--workers {workers} is more than the {cores} cores here: workers will compete for them (each also runs its own reader and, when rephrasing, a model session)"
            );
        }
        if let Some(poll) = self.follow {
            anyhow::ensure!(
                poll >= Duration::from_millis(100),
                "--poll {} is too short: list the sources at most every 100ms (e.g. --poll 30s)",
                humantime::format_duration(poll)
            );
        }
        Ok(())
    }
}
