//! `wrapflow run --metrics ADDR`: the job's progress as Prometheus metrics, and its health, on
//! `http://ADDR/metrics` and `/health` while it runs (see [`crate::metrics`]).
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `wrapflow_documents_total` | counter | documents read |
//! | `wrapflow_input_read_bytes_total` | counter | input bytes read |
//! | `wrapflow_chunks_total` | counter | chunks made |
//! | `wrapflow_rephrase_tasks_total` | counter | style tasks from the fan-out |
//! | `wrapflow_rephrase_accepted_total{style}` | counter | rephrasings the gates kept |
//! | `wrapflow_rephrase_rejected_total{style,reason}` | counter | rephrasings rejected, by reason |
//! | `wrapflow_rephrase_retries_total` | counter | answers generated again |
//! | `wrapflow_generated_tokens_total` | counter | tokens generated (retries included) |
//! | `wrapflow_accepted_tokens_total` | counter | tokens of the rows kept |
//! | `wrapflow_generated_tokens_per_second`, `wrapflow_accepted_tokens_per_second` | gauge | since the job started |
//! | `wrapflow_rephrase_queue_depth` | gauge | prompts waiting in the rephrase operators |
//! | `wrapflow_input_lag_files`, `wrapflow_input_lag_bytes` | gauge | listed input not yet read |
//! | `wrapflow_checkpoints_total` | counter | checkpoints committed |
//! | `wrapflow_last_checkpoint_age_seconds` | gauge | since the last commit (once there is one) |
//! | `wrapflow_remote_requests_total`, `wrapflow_remote_retries_total` | counter | inference-server requests |
//! | `wrapflow_remote_request_duration_seconds` | histogram | inference-server latency |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::job::progress::Progress;
use crate::metrics::{Exposed, Families, Labels};

/// What a job shows its scraper.
pub struct JobMetrics {
    pub progress: Arc<Progress>,
    pub started: Instant,
    /// Set once the job's dataflow runs.
    pub ready: AtomicBool,
}

impl Exposed for JobMetrics {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn families(&self) -> Families {
        let p = &self.progress;
        let m = p.snapshot();
        let mut f = Families::default();
        let one = |v: u64| vec![(Labels::new(), v as f64)];
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        f.counter("wrapflow_documents_total", "Documents read from the input.", one(load(&p.docs)));
        f.counter("wrapflow_input_read_bytes_total", "Input bytes read.", one(load(&p.bytes_read)));
        f.counter("wrapflow_chunks_total", "Chunks made.", one(m.counter("chunk.chunks")));
        for (name, help, counter) in [
            ("wrapflow_rephrase_tasks_total", "Style tasks from the fan-out.", "fanout.tasks"),
            (
                "wrapflow_rephrase_retries_total",
                "Answers generated again after a gate rejected one.",
                "rephrase.retries",
            ),
            ("wrapflow_generated_tokens_total", "Tokens generated, retries included.", "rephrase.generated_tokens"),
            ("wrapflow_accepted_tokens_total", "Tokens of the synthetic rows the gates kept.", "gates.accepted_tokens"),
            ("wrapflow_remote_requests_total", "Requests to the inference server, tries included.", "remote.requests"),
            ("wrapflow_remote_retries_total", "Requests to the inference server tried again.", "remote.retries"),
        ] {
            f.counter(name, help, one(m.counter(counter)));
        }
        let (mut accepted, mut rejected) = (Vec::new(), Vec::new());
        for (key, v) in m.counters_under("gates.") {
            let Some((style, what)) = key.split_once('.') else { continue };
            if what == "accepted" {
                accepted.push((vec![("style", style.to_string())], v as f64));
            } else if let Some(reason) = what.strip_prefix("rejected.") {
                rejected.push((vec![("style", style.to_string()), ("reason", reason.to_string())], v as f64));
            }
        }
        f.counter("wrapflow_rephrase_accepted_total", "Rephrasings the gates kept, by style.", accepted);
        f.counter("wrapflow_rephrase_rejected_total", "Rephrasings rejected, by style and reason.", rejected);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_s = |c: &str| m.counter(c) as f64 / secs;
        f.gauge(
            "wrapflow_generated_tokens_per_second",
            "Tokens generated per second since the job started.",
            per_s("rephrase.generated_tokens"),
        );
        f.gauge(
            "wrapflow_accepted_tokens_per_second",
            "Kept tokens per second since the job started.",
            per_s("gates.accepted_tokens"),
        );
        f.gauge(
            "wrapflow_rephrase_queue_depth",
            "Prompts waiting in the rephrase operators.",
            m.gauge("rephrase.queued") as f64,
        );
        f.gauge("wrapflow_input_lag_files", "Input objects listed but not yet read.", load(&p.pending_files) as f64);
        f.gauge(
            "wrapflow_input_lag_bytes",
            "Bytes of input objects listed but not yet read.",
            load(&p.pending_bytes) as f64,
        );
        let checkpoints = load(&p.checkpoints);
        f.counter("wrapflow_checkpoints_total", "Checkpoints committed.", one(checkpoints));
        if checkpoints > 0 {
            let age = crate::job::output::unix_now().saturating_sub(load(&p.checkpoint_unix));
            f.gauge(
                "wrapflow_last_checkpoint_age_seconds",
                "Seconds since the last checkpoint was committed.",
                age as f64,
            );
        }
        if let Some(h) = m.histogram("remote.latency_s") {
            f.histogram("wrapflow_remote_request_duration_seconds", "Inference-server request latency.", h);
        }
        f
    }
}

/// The `--metrics` endpoint of a running job; it stops when dropped (the job is over).
pub struct MetricsServer(Arc<AtomicBool>);

impl MetricsServer {
    pub fn start(addr: &str, progress: Arc<Progress>, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let watched = Arc::new(JobMetrics { progress, started: Instant::now(), ready: AtomicBool::new(true) });
        let stop = Arc::new(AtomicBool::new(false));
        let router = crate::metrics::router(watched);
        let (bound, server) = runtime.block_on(crate::metrics::serve_until(addr, router, stop.clone()))?;
        runtime.spawn(server);
        tracing::info!("metrics on http://{bound}/metrics, health on http://{bound}/health");
        Ok(MetricsServer(stop))
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
