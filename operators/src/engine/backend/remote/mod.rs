//! A [`Backend`] on an OpenAI-compatible inference server (vLLM, SGLang, TGI, llama.cpp's
//! server, Ollama, a hosted API, or `wrapflow serve`).
//!
//! Each request goes to `{endpoint}/chat/completions` with the style's messages (or to
//! `{endpoint}/completions` with its plain few-shot text, for base models). At most
//! `concurrency` requests are in flight per worker; the rest wait in the backend's queue, which
//! the job's backpressure on its source keeps short. Failures that pass (timeouts, dropped
//! connections, 429, 5xx) are retried with exponential backoff and jitter, honouring
//! `Retry-After`, for up to `retry_budget_s`; then the backend fails and the job stops at its
//! last checkpoint. An answer that cannot be read (not JSON, no choices, cut short) fails only
//! its own task, which becomes a reject with the reason.
//!
//! Decoding features that an OpenAI API cannot express (the number and name guards, soft stops)
//! are not sent; the gates judge the answers as they judge the in-process ones.

mod http;

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::engine::backend::{Answer, Backend, Lineage, Request};
use crate::engine::decode::generate::GenerationConfig;
use crate::state::metrics::Metrics;
pub use http::{Outcome, endpoint_display};

/// Which API of the server a request goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/chat/completions`: the server applies the model's chat template.
    #[default]
    Chat,
    /// `/completions`: the style as plain few-shot text (base models).
    Completions,
}

/// Settings of a remote backend (`REPHRASE WITH (endpoint = ..., ...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteConfig {
    /// Base URL of the API, e.g. `http://host:8000/v1`.
    pub endpoint: String,
    /// The model's name as the server knows it.
    pub model: String,
    pub api: Api,
    /// Requests in flight per worker.
    pub concurrency: usize,
    /// Longest wait for one response.
    pub timeout_s: u64,
    /// How long a request that keeps failing with a passing error is retried before the job stops.
    pub retry_budget_s: u64,
    /// Send the sampling extensions vLLM, SGLang and `wrapflow serve` accept (`top_k`,
    /// `min_tokens`, `no_repeat_ngram_size`, and continuing an answer prefix with
    /// `continue_final_message`); off for APIs that refuse unknown fields.
    pub extensions: bool,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            endpoint: String::new(),
            model: String::new(),
            api: Api::Chat,
            // A vLLM server batches up to 256 sequences; a few workers at 64 keep it full.
            concurrency: 64,
            timeout_s: 300,
            retry_budget_s: 600,
            extensions: true,
        }
    }
}

/// A finished request as the sending task reports it.
struct Done {
    index: usize,
    outcome: Outcome,
}

/// The remote backend of one worker (see the module docs).
pub struct RemoteBackend {
    cfg: RemoteConfig,
    generation: GenerationConfig,
    client: reqwest::Client,
    key: Option<String>,
    runtime: Handle,
    metrics: Metrics,
    queue: VecDeque<(usize, Value, String)>,
    in_flight: usize,
    submitted: usize,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
}

impl RemoteBackend {
    /// A backend sending with `runtime`; `key` is the API key (sent as a bearer token, never
    /// shown). Counts `remote.requests`, `remote.retries`, `remote.completion_tokens` and the
    /// histogram `remote.latency_s` in `metrics`.
    pub fn new(
        cfg: RemoteConfig,
        generation: GenerationConfig,
        key: Option<String>,
        runtime: Handle,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(&cfg.endpoint)
            .map_err(|e| anyhow::anyhow!("endpoint {}: {e}", endpoint_display(&cfg.endpoint)))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "endpoint {}: only http and https are supported",
            endpoint_display(&cfg.endpoint)
        );
        anyhow::ensure!(!cfg.model.is_empty(), "a remote backend needs the served `model` name");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let (tx, rx) = mpsc::channel();
        let queue = VecDeque::new();
        Ok(RemoteBackend { cfg, generation, client, key, runtime, metrics, queue, in_flight: 0, submitted: 0, tx, rx })
    }

    /// The request body for `r`, and the path it goes to.
    pub fn body(&self, r: &Request) -> (Value, String) {
        let g = &self.generation;
        let mut body = json!({
            "model": self.cfg.model,
            "max_tokens": r.max_new_tokens,
            "temperature": r.temperature.unwrap_or(g.temperature),
            "top_p": g.top_p,
            "seed": r.seed,
        });
        if !g.stop.is_empty() {
            body["stop"] = json!(g.stop);
        }
        if self.cfg.extensions {
            if g.top_k > 0 {
                body["top_k"] = json!(g.top_k);
            }
            if r.min_new_tokens > 0 {
                body["min_tokens"] = json!(r.min_new_tokens);
            }
            if g.no_repeat_ngram > 0 {
                body["no_repeat_ngram_size"] = json!(g.no_repeat_ngram);
            }
            if let Some(w) = guards(r) {
                body["wrapflow"] = w;
            }
        }
        match self.cfg.api {
            Api::Chat => {
                let mut messages = r.messages.clone();
                if self.cfg.extensions && !r.prefix.is_empty() {
                    // The answer starts with the prefix, which the model continues.
                    if let Some(m) = messages.as_array_mut() {
                        m.push(json!({"role": "assistant", "content": r.prefix}));
                    }
                    body["continue_final_message"] = json!(true);
                    body["add_generation_prompt"] = json!(false);
                }
                body["messages"] = messages;
                (body, "chat/completions".into())
            }
            Api::Completions => {
                body["prompt"] = json!(format!("{}{}", r.plain, r.prefix));
                (body, "completions".into())
            }
        }
    }

    /// Starts queued requests while fewer than `concurrency` are in flight.
    fn launch(&mut self) {
        while self.in_flight < self.cfg.concurrency.max(1) {
            let Some((index, body, path)) = self.queue.pop_front() else { break };
            self.in_flight += 1;
            let call = http::Call {
                client: self.client.clone(),
                url: format!("{}/{path}", self.cfg.endpoint.trim_end_matches('/')),
                key: self.key.clone(),
                body,
                chat: self.cfg.api == Api::Chat,
                budget: Duration::from_secs(self.cfg.retry_budget_s),
                metrics: self.metrics.clone(),
            };
            let tx = self.tx.clone();
            self.runtime.spawn(async move {
                let outcome = call.run().await;
                let _ = tx.send(Done { index, outcome });
            });
        }
    }
}

impl Backend for RemoteBackend {
    fn submit(&mut self, r: Request) -> anyhow::Result<usize> {
        let (body, path) = self.body(&r);
        let index = self.submitted;
        self.submitted += 1;
        self.queue.push_back((index, body, path));
        self.launch();
        Ok(index)
    }

    fn poll(&mut self, budget: Duration, done: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()> {
        if self.in_flight == 0 {
            return Ok(());
        }
        // Wait for the first answer up to the budget, then take whatever else has arrived.
        let mut next = self.rx.recv_timeout(budget).ok();
        while let Some(d) = next {
            self.in_flight -= 1;
            match d.outcome {
                Outcome::Answer(a) => done(d.index, Ok(a)),
                Outcome::Unreadable(why) => done(d.index, Err(why)),
                Outcome::Fatal(why) => anyhow::bail!(
                    "the rephrase endpoint {} failed: {why}; the job stops at its last checkpoint: run the same \
                     command again once the endpoint is back, and it resumes there",
                    endpoint_display(&self.cfg.endpoint)
                ),
            }
            next = self.rx.try_recv().ok();
        }
        self.launch();
        Ok(())
    }

    fn outstanding(&self) -> usize {
        self.in_flight + self.queue.len()
    }

    fn continues_prefix(&self) -> bool {
        self.cfg.extensions || self.cfg.api == Api::Completions
    }

    fn lineage(&self) -> Lineage {
        let host = url::Url::parse(&self.cfg.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(|h| format!("{h}{}", u.port().map(|p| format!(":{p}")).unwrap_or_default())))
            .unwrap_or_default();
        Lineage {
            model: format!("{}@{host}", self.cfg.model),
            weights_hash: format!("endpoint:{}", endpoint_display(&self.cfg.endpoint)),
        }
    }
}

/// wrapflow's own extension, for a server that can decode as in process (`wrapflow serve`): the
/// text the number and name guards take their words from (and the style's format words, which
/// are not names), and the soft stop. Other servers
/// ignore it (vLLM logs the field as ignored).
fn guards(r: &Request) -> Option<Value> {
    let mut w = serde_json::Map::new();
    if r.numbers.is_some() {
        w.insert("numbers_from".into(), json!(r.source));
    }
    if let Some(g) = &r.names {
        w.insert("names_from".into(), json!(r.source));
        w.insert("names_allow".into(), json!(g.allowed()));
    }
    if let Some(s) = &r.soft_stop {
        w.insert("soft_stop".into(), json!({"after_tokens": s.after_tokens, "at": s.at}));
    }
    (!w.is_empty()).then_some(Value::Object(w))
}

/// The API key a plan names: the variable `env` or the first line of `file` (neither: none).
pub fn api_key(env: &str, file: &str) -> anyhow::Result<Option<String>> {
    if !env.is_empty() {
        let key = std::env::var(env).map_err(|_| anyhow::anyhow!("api_key_env: the variable {env} is not set"))?;
        return Ok(Some(key.trim().to_string()));
    }
    if !file.is_empty() {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("api_key_file: reading it: {e}"))?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        anyhow::ensure!(!key.is_empty(), "api_key_file: the file is empty");
        return Ok(Some(key));
    }
    Ok(None)
}
