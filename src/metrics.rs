//! Prometheus exposition for `wrapflow run --metrics ADDR` and `wrapflow serve`: metric families
//! built from what a job or the server counts, encoded in Prometheus' text format (version
//! 0.0.4) by the `prometheus` crate, and the HTTP routes `/metrics`, `/health`, `/health/live`
//! and `/health/ready`.
//!
//! Names follow Prometheus' conventions: `wrapflow_` first, counters end in `_total`, units are
//! in the name (`_seconds`, `_bytes`, `_tokens`). Values are read from the job's own counters at
//! each scrape, so a scrape never slows the dataflow.
//!
//! ```
//! use wrapflow::metrics::Families;
//!
//! let mut f = Families::default();
//! f.counter("wrapflow_documents_total", "Documents read.", vec![(vec![], 12.0)]);
//! f.gauge("wrapflow_input_lag_files", "Listed objects not yet read.", 3.0);
//! let text = f.encode();
//! assert!(text.contains("# TYPE wrapflow_documents_total counter\nwrapflow_documents_total 12\n"));
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::proto::{Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use wrapflow_operators::state::metrics::Histogram as Bins;

/// Labels of one sample.
pub type Labels = Vec<(&'static str, String)>;

/// Metric families of one scrape.
#[derive(Default)]
pub struct Families(pub Vec<MetricFamily>);

fn sample(labels: Labels) -> Metric {
    let pairs = labels
        .into_iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v);
            p
        })
        .collect();
    Metric::from_label(pairs)
}

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        // A family without samples (a counter no stage has counted yet) is left out.
        if metrics.is_empty() {
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.into());
        f.set_help(help.into());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    /// A counter with one sample per label set.
    pub fn counter(&mut self, name: &str, help: &str, samples: Vec<(Labels, f64)>) {
        let metrics = samples
            .into_iter()
            .map(|(labels, v)| {
                let mut m = sample(labels);
                let mut c = Counter::default();
                c.set_value(v);
                m.set_counter(c);
                m
            })
            .collect();
        self.push(name, help, MetricType::COUNTER, metrics);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        let mut g = Gauge::default();
        g.set_value(v);
        self.push(name, help, MetricType::GAUGE, vec![Metric::from_gauge(g)]);
    }

    /// A histogram from equal-width bins: each bin's upper edge is a bucket bound, and the last
    /// bin (open above) is `+Inf`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Bins) {
        let width = h.hi / h.counts.len().max(1) as f64;
        let mut seen = 0;
        let mut buckets = Vec::new();
        for (i, c) in h.counts.iter().enumerate().take(h.counts.len().saturating_sub(1)) {
            seen += c;
            let mut b = Bucket::default();
            b.set_upper_bound((i + 1) as f64 * width);
            b.set_cumulative_count(seen);
            buckets.push(b);
        }
        let mut p = Histogram::default();
        p.set_bucket(buckets);
        p.set_sample_count(h.n);
        p.set_sample_sum(h.sum);
        let mut m = Metric::default();
        m.set_histogram(p);
        self.push(name, help, MetricType::HISTOGRAM, vec![m]);
    }

    /// The families in Prometheus' text format.
    pub fn encode(mut self) -> String {
        self.0.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = String::new();
        prometheus::TextEncoder::new().encode_utf8(&self.0, &mut out).expect("families with samples encode");
        out
    }
}

/// What the routes answer: the scrape, and whether the process is ready for work.
pub trait Exposed: Send + Sync + 'static {
    fn families(&self) -> Families;
    fn ready(&self) -> bool;
}

/// `/metrics` and the health routes over `exposed`.
pub fn router<E: Exposed>(exposed: Arc<E>) -> Router {
    let (m, r) = (exposed.clone(), exposed);
    Router::new()
        .route("/metrics", get(move || async move { scrape(m.as_ref()) }))
        .route("/health/live", get(|| async { (StatusCode::OK, "live\n") }))
        .route(
            "/health",
            get({
                let r = r.clone();
                move || async move { health(r.as_ref()) }
            }),
        )
        .route("/health/ready", get(move || async move { health(r.as_ref()) }))
}

fn scrape(e: &impl Exposed) -> Response {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], e.families().encode()).into_response()
}

/// 200 `ready` once the process does its work; 503 before (it is live all the same).
fn health(e: &impl Exposed) -> Response {
    if e.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "live, not ready\n").into_response()
    }
}

/// Serves `router` on `addr` until `stop` is set; returns the bound address (port 0 picks one).
pub async fn serve_until(
    addr: &str,
    router: Router,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()> + use<>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--metrics {addr}: binding"))?;
    let bound = listener.local_addr()?;
    let until = async move {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let server = async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(until).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bins_become_cumulative_buckets_with_an_open_last_one() {
        let mut h = Bins::new(2.0, 4);
        for v in [0.1, 0.6, 0.7, 1.9, 5.0] {
            h.add(v);
        }
        let mut f = Families::default();
        f.histogram("wrapflow_x_seconds", "X.", &h);
        let text = f.encode();
        for line in [
            "wrapflow_x_seconds_bucket{le=\"0.5\"} 1",
            "wrapflow_x_seconds_bucket{le=\"1\"} 3",
            "wrapflow_x_seconds_bucket{le=\"1.5\"} 3",
            "wrapflow_x_seconds_bucket{le=\"+Inf\"} 5",
            "wrapflow_x_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        let mut empty = Families::default();
        empty.counter("wrapflow_none_total", "Nothing yet.", vec![]);
        assert_eq!(empty.encode(), "", "a family without samples is left out");
    }
}
