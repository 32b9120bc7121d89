//! What `wrapflow serve` shows on `/metrics` (Prometheus' text format) and `/health`:
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `wrapflow_serve_requests_total{route,code}` | counter | requests answered, by route and HTTP status |
//! | `wrapflow_serve_request_duration_seconds{route}` | histogram | from the request to the end of its response (a stream's last event) |
//! | `wrapflow_serve_prompt_tokens_total`, `wrapflow_serve_completion_tokens_total` | counter | tokens of finished requests |
//! | `wrapflow_serve_requests_held` | gauge | requests decoding or queued now |
//! | `wrapflow_serve_max_requests` | gauge | the most it holds before answering 429 |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use super::Served;
use crate::metrics::{Exposed, Families};

/// The server's counters.
pub(crate) struct ServeMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub prompt_tokens: IntCounter,
    pub completion_tokens: IntCounter,
}

impl ServeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("wrapflow_serve_requests_total", "Requests answered, by route and HTTP status."),
            &["route", "code"],
        )
        .expect("a valid counter");
        // From 10 ms to about 3 minutes: a short answer on a fast model to a long one on a slow CPU.
        let buckets = prometheus::exponential_buckets(0.01, 2.0, 15).expect("valid buckets");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wrapflow_serve_request_duration_seconds",
                "Seconds from a request to the end of its response (a stream's last event).",
            )
            .buckets(buckets),
            &["route"],
        )
        .expect("a valid histogram");
        let prompt_tokens =
            IntCounter::new("wrapflow_serve_prompt_tokens_total", "Prompt tokens of finished requests.")
                .expect("a valid counter");
        let completion_tokens =
            IntCounter::new("wrapflow_serve_completion_tokens_total", "Tokens generated for finished requests.")
                .expect("a valid counter");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(prompt_tokens.clone()),
            Box::new(completion_tokens.clone()),
        ] {
            registry.register(c).expect("each metric is registered once");
        }
        ServeMetrics { registry, requests, duration, prompt_tokens, completion_tokens }
    }

    /// Records a finished response of `route`, `started` at the request.
    pub fn finished(&self, route: &str, started: Instant) {
        self.duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    }
}

impl Exposed for Served {
    /// The model is loaded before the server binds: serving at all means ready.
    fn ready(&self) -> bool {
        true
    }

    fn families(&self) -> Families {
        let mut f = Families(self.metrics.registry.gather());
        f.gauge(
            "wrapflow_serve_requests_held",
            "Requests decoding or queued now.",
            self.requests.load(Ordering::Relaxed) as f64,
        );
        f.gauge("wrapflow_serve_max_requests", "Requests held at most before answering 429.", self.max_requests as f64);
        f
    }
}

/// Counts every answer of the OpenAI routes by route and status.
pub(crate) async fn count(State(s): State<Arc<Served>>, request: Request, next: Next) -> Response {
    // Only the routes themselves pass through (`route_layer`): the path is the route.
    let route = request.uri().path().to_string();
    let response = next.run(request).await;
    s.metrics.requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
    response
}
