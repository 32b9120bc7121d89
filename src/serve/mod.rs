//! `wrapflow serve`: an OpenAI-compatible HTTP server over wrapflow's continuous-batching engine.
//!
//! Routes: `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions`, streaming
//! (server-sent events) and not, with `usage` counts; `GET /metrics` (Prometheus) and `/health`. Requests from every client share one
//! continuous batch ([`engine`]). Bad requests get OpenAI-style 4xx errors. On SIGTERM or
//! Ctrl-C the server stops taking connections and finishes the requests in flight.
//!
//! Besides OpenAI's fields it takes the sampling extensions vLLM takes (`top_k`, `min_tokens`,
//! `continue_final_message`, `add_generation_prompt`) and `no_repeat_ngram_size`, so that a plan
//! pointed at it decodes as it would in process.

mod api;
pub mod engine;
mod metrics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokenizers::Tokenizer;
use wrapflow_operators::engine::{Decoder, GenerationConfig, SessionConfig};

/// How to serve a model.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub model: PathBuf,
    /// The name clients ask for (default: the model directory's name).
    pub name: Option<String>,
    pub host: String,
    pub port: u16,
    /// Sequences decoded together.
    pub batch: usize,
    pub session: SessionConfig,
    /// `max_tokens` of a request that gives none.
    pub max_tokens: usize,
    /// Requests held at once (decoding or queued); more are answered 429 with `Retry-After`.
    pub max_requests: usize,
    /// Open client connections; more wait to be accepted.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
}

/// What the request handlers share.
pub(crate) struct Served {
    pub name: String,
    pub tokenizer: Tokenizer,
    /// The token prompts start with (see `Decoder::bos_prefix`).
    pub bos_prefix: Option<u32>,
    pub eos_token: String,
    pub template: Option<String>,
    /// Longest prompt plus answer, in tokens.
    pub context: usize,
    pub max_tokens: usize,
    pub jobs: Mutex<mpsc::Sender<engine::Job>>,
    /// Requests held now, and the most it may hold.
    pub requests: AtomicUsize,
    pub max_requests: usize,
    pub metrics: metrics::ServeMetrics,
}

/// Loads the model, binds, and serves until SIGTERM or Ctrl-C; `ready` hears the bound address.
pub async fn serve(cfg: ServeConfig, ready: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let dec = Decoder::load(&cfg.model, &cfg.session)
        .with_context(|| format!("loading the model {}", cfg.model.display()))?;
    let name = cfg.name.clone().unwrap_or_else(|| dir_name(&cfg.model));
    let (tx, rx) = mpsc::channel();
    let served = Arc::new(Served {
        name,
        tokenizer: dec.tokenizer.clone(),
        bos_prefix: dec.bos_prefix,
        eos_token: dec.eos_token.clone(),
        template: dec.chat_template.clone(),
        context: context_length(&cfg.model),
        max_tokens: cfg.max_tokens,
        jobs: Mutex::new(tx),
        requests: AtomicUsize::new(0),
        max_requests: cfg.max_requests.max(1),
        metrics: metrics::ServeMetrics::new(),
    });
    let generation = GenerationConfig { batch_size: cfg.batch.max(1), ..Default::default() };
    let engine = std::thread::Builder::new().name("engine".into()).spawn(move || engine::run(dec, generation, rx))?;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
        .await
        .with_context(|| format!("binding {}:{}", cfg.host, cfg.port))?;
    ready(listener.local_addr()?);
    accept(listener, api::router(served), &cfg).await;
    // The handlers are gone, and with them the engine's senders: it ends once its batch is empty.
    engine.join().map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    Ok(())
}

/// Serves connections until SIGTERM or Ctrl-C, then lets each finish its requests in flight. At
/// most `max_connections` are open at once, and a client that is slower than `header_timeout`
/// to send a request's headers is disconnected, so that idle or slow connections cannot hold
/// the server.
async fn accept(listener: tokio::net::TcpListener, router: axum::Router, cfg: &ServeConfig) {
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout((!cfg.header_timeout.is_zero()).then_some(cfg.header_timeout));
    let stop_signal = shutdown();
    tokio::pin!(stop_signal);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop_signal => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => tokio::select! {
                    _ = &mut stop_signal => break,
                    conn = listener.accept() => conn.map(|c| (c, p)),
                },
                Err(_) => break,
            },
        };
        let ((tcp, _), permit) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = stopping.send(true);
    // Every connection holds a slot until it ends.
    let _ = slots.acquire_many(cfg.max_connections.max(1) as u32).await;
}

/// SIGTERM or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

fn dir_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned())
}

/// The model's context length from its `config.json` (2048 if it does not say).
fn context_length(dir: &Path) -> usize {
    std::fs::read(dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c.get("max_position_embeddings").and_then(Value::as_u64))
        .map_or(2048, |n| n as usize)
}
