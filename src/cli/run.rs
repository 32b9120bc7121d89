//! `wrapflow run`: run a plan as a job.

use clap::Args;

use crate::cli::PlanArgs;
use crate::job::progress;
use crate::job::run::{self, RunOptions};
use crate::plan::Plan;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Worker threads
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// No progress display, and only warnings and errors in the log
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Keep watching the sources for new objects until stopped (SIGINT / SIGTERM)
    #[arg(long)]
    pub follow: bool,
    /// How often a followed job lists its sources
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll: std::time::Duration,
    /// At most this many input objects between checkpoints
    #[arg(long, default_value_t = 16)]
    pub checkpoint_files: usize,
    /// At most about this many MB of input between checkpoints
    #[arg(long, default_value_t = 256)]
    pub checkpoint_mb: u64,
    /// Aim for a checkpoint about this often (e.g. 10m): segments are sized by the measured
    /// input rate, whole objects at a time. Segment boundaries then depend on timing, so reruns
    /// may batch differently (the rows are the same)
    #[arg(long, value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Write into an output that holds objects wrapflow did not write (they are listed in
    /// `_wrapflow/owner.json` and never removed)
    #[arg(long)]
    pub force: bool,
    /// The output holds a run with other settings: remove what that run wrote and start again
    #[arg(long)]
    pub restart: bool,
    /// Serve Prometheus metrics (`/metrics`) and health checks (`/health`) on this address while
    /// the job runs, e.g. 0.0.0.0:9184
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Timely cluster mode: the same plan on every process, each with its index.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Processes in the cluster (with --process and --hostfile)
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process's index, 0-based; process 0 writes the manifest
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// One `host:port` per process, in process order
    #[arg(long)]
    hostfile: Option<std::path::PathBuf>,
    /// Seconds to wait for every peer at start
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
}

impl ClusterArgs {
    pub fn spec(&self) -> anyhow::Result<Option<crate::job::cluster::ClusterSpec>> {
        match (&self.hostfile, self.processes) {
            (None, 1) => Ok(None),
            (None, _) => anyhow::bail!("--processes needs --hostfile"),
            (Some(h), n) => crate::job::cluster::ClusterSpec::from_hostfile(
                h,
                n,
                self.process,
                std::time::Duration::from_secs(self.connect_timeout),
            )
            .map(Some),
        }
    }
}

/// Runs the plan and prints its report; returns whether a signal stopped it before the end.
pub fn run(a: RunArgs) -> anyhow::Result<bool> {
    let p = Plan::load(&a.plan.plan, &a.plan.sets)?;
    let mode = if a.quiet { progress::Mode::Quiet } else { progress::Mode::Auto };
    let cluster = a.cluster.spec()?;
    let opts = RunOptions {
        workers: a.workers,
        progress: mode,
        registry: None,
        cluster,
        follow: a.follow.then_some(a.poll),
        limits: crate::job::follow::Limits {
            files: a.checkpoint_files,
            bytes: a.checkpoint_mb << 20,
            interval: a.checkpoint_interval,
        },
        claim: crate::job::output::ClaimMode { force: a.force, restart: a.restart },
        metrics: a.metrics,
    };
    opts.validate()?;
    run::stop_on_signal();
    let m = run::run(&p, &opts)?;
    super::out(crate::report::text::text(&m));
    let synthetic = if m.rephrase.is_some() { "synthetic/, " } else { "" };
    let url = crate::plan::secrets::redact(&p.sink.0.url).into_owned();
    super::out(format!("output: {url}  (manifest.json, chunks/, {synthetic}rejects/)\n"));
    let stopped = run::stopped_at(&m);
    if let Some(at) = &stopped {
        super::out(format!("stopped {at}: run the same command again to resume\n"));
    }
    Ok(stopped.is_some())
}
