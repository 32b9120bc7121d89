//! `wrapflow serve`: an OpenAI-compatible HTTP server over wrapflow's continuous-batching engine.
//!
//! Routes: `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions`, streaming
//! (server-sent events) and not, with `usage` counts. Requests from every client share one
//! continuous batch ([`engine`]). Bad requests get OpenAI-style 4xx errors. On SIGTERM or
//! Ctrl-C the server stops taking connections and finishes the requests in flight.
//!
//! Besides OpenAI's fields it takes the sampling extensions vLLM takes (`top_k`, `min_tokens`,
//! `continue_final_message`, `add_generation_prompt`) and `no_repeat_ngram_size`, so that a plan
//! pointed at it decodes as it would in process.

mod api;
pub mod engine;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

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
    });
    let generation = GenerationConfig { batch_size: cfg.batch.max(1), ..Default::default() };
    let engine = std::thread::Builder::new().name("engine".into()).spawn(move || engine::run(dec, generation, rx))?;
    let listener = tokio::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
        .await
        .with_context(|| format!("binding {}:{}", cfg.host, cfg.port))?;
    ready(listener.local_addr()?);
    axum::serve(listener, api::router(served)).with_graceful_shutdown(shutdown()).await?;
    // The handlers are gone, and with them the engine's senders: it ends once its batch is empty.
    engine.join().map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    Ok(())
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
