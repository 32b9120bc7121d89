//! `wrapflow serve`: an OpenAI-compatible server over a model directory (see [`crate::serve`]).

use std::path::PathBuf;

use clap::Args;
use wrapflow_operators::engine::{Provider, SessionConfig};

use super::generate::ProviderArg;
use crate::serve::{ServeConfig, serve};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model directory (from `wrapflow model import`)
    #[arg(long)]
    pub model: PathBuf,
    /// The model's name for clients (default: the directory's name)
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the address is printed)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Sequences decoded together: requests of every client share this batch
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// ONNX Runtime threads (0: its default)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub provider: ProviderArg,
    /// `max_tokens` of a request that gives none (at most what its prompt leaves of the context)
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Requests held at once, decoding or queued (0: 8 × batch); more get 429 with Retry-After
    #[arg(long, default_value_t = 0)]
    pub max_requests: usize,
    /// Open client connections at once; more wait to be accepted
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers before it is disconnected
    #[arg(long, default_value_t = 30)]
    pub header_timeout_s: u64,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let provider = match a.provider {
        ProviderArg::Cpu => Provider::Cpu,
        ProviderArg::Cuda => Provider::Cuda,
    };
    let cfg = ServeConfig {
        model: a.model,
        name: a.name,
        host: a.host,
        port: a.port,
        batch: a.batch,
        session: SessionConfig { provider, intra_threads: a.threads, ..Default::default() },
        max_tokens: a.max_tokens,
        max_requests: if a.max_requests == 0 { 8 * a.batch.max(1) } else { a.max_requests },
        max_connections: a.max_connections,
        header_timeout: std::time::Duration::from_secs(a.header_timeout_s),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(cfg, |addr| {
        // One line on stdout that scripts (and tests) wait for.
        super::out(format!("wrapflow serve: listening on http://{addr}/v1\n"));
    }))
}
