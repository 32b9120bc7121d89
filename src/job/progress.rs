//! Progress of a run: a bar on a terminal, a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wrapflow_operators::state::metrics::{Histogram, Metrics};

/// Counters that workers add to.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
    pub docs: AtomicU64,
    /// The workers' stage metrics (chunks, rephrasings and their tokens are read from them).
    workers: std::sync::Mutex<Vec<Metrics>>,
    /// Checkpoints committed, the last one's time (Unix seconds), and input listed but not yet
    /// consumed (the lag of a followed job).
    pub checkpoints: AtomicU64,
    pub checkpoint_unix: AtomicU64,
    pub pending_files: AtomicU64,
    pub pending_bytes: AtomicU64,
    /// `process I/N` in a cluster, put on every progress line.
    pub tag: std::sync::OnceLock<String>,
}

impl Progress {
    /// Shows a worker's stage metrics in the progress.
    pub fn watch(&self, metrics: &Metrics) {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).push(metrics.clone());
    }

    /// A counter summed over the workers.
    pub fn counter(&self, name: &str) -> u64 {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|m| m.counter(name)).sum()
    }

    /// Every worker's metrics, summed.
    pub fn snapshot(&self) -> wrapflow_operators::state::metrics::MetricSet {
        let mut all = wrapflow_operators::state::metrics::MetricSet::default();
        for m in self.workers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            all.merge(&m.snapshot());
        }
        all
    }

    /// Counts a resumed job starts from: what this process's workers had done at the checkpoint
    /// (timely numbers process `p`'s workers `p × workers ..`).
    pub(crate) fn resume_counts(
        &self,
        indexes: &[crate::job::checkpoint::WorkerIndex],
        process: usize,
        workers: usize,
    ) {
        for i in indexes.iter().skip(process * workers).take(workers) {
            self.docs.fetch_add(i.report.sql_rows, Ordering::Relaxed);
            let bytes: u64 = i.report.inputs.iter().flat_map(|x| &x.files).map(|f| f.bytes).sum();
            self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// A histogram merged over the workers.
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Option<Histogram> = None;
        for h in workers.iter().filter_map(|m| m.snapshot().histogram(name).cloned()) {
            match &mut all {
                Some(a) => a.merge(&h),
                None => all = Some(h),
            }
        }
        all
    }
}

/// The remote backend's part of a progress line: requests/s, completion tokens/s and latency
/// percentiles (empty for in-process runs).
fn remote_part(progress: &Progress, start: Instant) -> String {
    let requests = progress.counter("remote.requests");
    let Some(h) = progress.histogram("remote.latency_s").filter(|_| requests > 0) else { return String::new() };
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    let q = |x: f64| h.quantile(x).unwrap_or(f64::NAN);
    format!(
        ", {requests} requests ({:.1}/s, {:.0} tok/s, latency p50 {:.1} s p99 {:.1} s, {} retried)",
        requests as f64 / secs,
        progress.counter("remote.completion_tokens") as f64 / secs,
        q(0.5),
        q(0.99),
        progress.counter("remote.retries")
    )
}

/// How to show progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A bar if stderr is a terminal, else log lines.
    Auto,
    Quiet,
}

/// Shows progress until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rates(p: &Progress, start: Instant) -> (u64, u64, f64, f64) {
    let secs = start.elapsed().as_secs_f64().max(1e-3);
    let docs = p.docs.load(Ordering::Relaxed);
    let bytes = p.bytes_read.load(Ordering::Relaxed);
    (docs, bytes, docs as f64 / secs, bytes as f64 / secs / 1e6)
}

/// `, checkpoint N 12 s ago, 3 files (40.0 MB) waiting` once a checkpoint was committed.
fn checkpoint_part(p: &Progress) -> String {
    let n = p.checkpoints.load(Ordering::Relaxed);
    if n == 0 {
        return String::new();
    }
    let at = p.checkpoint_unix.load(Ordering::Relaxed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!(
        ", checkpoint {n} {} s ago, {} files ({:.1} MB) waiting",
        now.saturating_sub(at),
        p.pending_files.load(Ordering::Relaxed),
        p.pending_bytes.load(Ordering::Relaxed) as f64 / 1e6
    )
}

/// Starts showing `progress`.
pub fn report(progress: Arc<Progress>, mode: Mode) -> Reporter {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = (mode == Mode::Auto).then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let tty = std::io::stderr().is_terminal();
            let bar = tty.then(|| {
                let b = ProgressBar::new(0);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta} {msg}",
                    )
                    .expect("valid template"),
                );
                b
            });
            let mut last_log = Instant::now();
            // Seconds between log lines (`WRAPFLOW_PROGRESS_S`, 10).
            let every = std::env::var("WRAPFLOW_PROGRESS_S")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(Duration::from_secs(10), Duration::from_secs_f64);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let (docs, bytes, dps, mbps) = rates(&progress, start);
                let total = progress.bytes_total.load(Ordering::Relaxed);
                let chunks = progress.counter("chunk.chunks");
                let rephrased = progress.counter("rephrase.answers");
                let gen_rate = progress.counter("rephrase.generated_tokens") as f64 / start.elapsed().as_secs_f64();
                let kept_rate = progress.counter("gates.accepted_tokens") as f64 / start.elapsed().as_secs_f64();
                let mut wrap = if rephrased > 0 {
                    format!(", {rephrased} rephrased ({gen_rate:.0} tok/s generated, {kept_rate:.0} tok/s accepted)")
                } else {
                    String::new()
                };
                wrap += &remote_part(&progress, start);
                wrap += &checkpoint_part(&progress);
                match &bar {
                    Some(b) => {
                        b.set_length(total);
                        b.set_position(bytes.min(total));
                        b.set_message(format!("{docs} docs ({dps:.0}/s, {mbps:.1} MB/s), {chunks} chunks{wrap}"));
                    }
                    None if last_log.elapsed() >= every => {
                        last_log = Instant::now();
                        // Only the process that lists the input knows its total.
                        let of = if total > 0 { format!(" of {:.1} MB", total as f64 / 1e6) } else { String::new() };
                        tracing::info!(
                            process = progress.tag.get().map(String::as_str).unwrap_or("0/1"),
                            "progress: {:.1} MB read{of}, {docs} docs ({dps:.0} docs/s, {mbps:.1} MB/s), {chunks} chunks{wrap}",
                            bytes as f64 / 1e6,
                        );
                    }
                    None => {}
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        })
    });
    Reporter { stop, thread }
}
