//! `REPHRASE WITH (...)`: the plan's rephrasing settings, in process or on a server.

use serde::{Deserialize, Serialize};
use wrapflow_operators::engine::remote::Api;
use wrapflow_operators::engine::{GenerationConfig, Provider, RemoteConfig, SessionConfig};
use wrapflow_operators::io::journal::JournalConfig;
use wrapflow_operators::stages::gates::GateConfig;
use wrapflow_operators::stages::rephrase::RephraseConfig;

/// `REPHRASE WITH (...)`: the model, the styles and the decoding settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RephraseSpec {
    /// Model directory (`wrapflow model import`), or with `endpoint` the model's name as served.
    pub model: String,
    /// Base URL of an OpenAI-compatible server (`http://host:8000/v1`): rephrase there instead of
    /// in this process (see [`RemoteConfig`]).
    pub endpoint: String,
    /// The model's name on that server, if not `model` (which may then stay a local directory).
    pub served: String,
    /// `chat` or `completions` (base models with plain-text styles).
    pub api: Api,
    /// Requests in flight per worker, per-request timeout, how long failing requests are retried.
    pub concurrency: usize,
    pub timeout_s: u64,
    pub retry_budget_s: u64,
    /// Send vLLM's sampling extensions (off for APIs that refuse unknown fields).
    pub extensions: bool,
    /// Where the API key is: an environment variable's name, or a file. Never the key itself.
    pub api_key_env: String,
    pub api_key_file: String,
    /// Comma-separated style names: built-in ones or the plan's `STYLE`s.
    pub styles: String,
    /// Seed of the style sampling rates and of sampled decoding.
    pub seed: u64,
    /// Sequences decoded together per worker.
    pub batch_size: usize,
    /// Default token budget (a style's `max_new_tokens` wins).
    pub max_new_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    /// Block repeats of generated n-grams (0: off).
    pub no_repeat_ngram: usize,
    /// ONNX Runtime threads per worker's session.
    pub threads: usize,
    pub provider: Provider,
    pub time_slice_ms: u64,
    /// New answers (sampled at `retry_temperature`) for a task whose answer fails a gate that
    /// needs no model; 0: off.
    pub retries: u32,
    pub retry_temperature: f32,
    /// Constrained decoding: only numbers of the chunk may be written (styles with the number
    /// gate on).
    pub constrain_numbers: bool,
    /// Constrained decoding: mid-sentence, only capitalised words of the chunk may be written
    /// (styles with the entity gate on).
    pub constrain_names: bool,
    /// Constrained decoding: with the name guard, every word the model starts begins a word of
    /// the chunk, a function word or a format word (off by default).
    pub constrain_vocabulary: bool,
    /// A retry continues the best answer up to the sentence its gate flagged.
    pub resume_retries: bool,
    /// Constrained decoding: no copying of the worked examples' token n-grams that the chunk
    /// lacks (styles with the leak gate on).
    pub constrain_leaks: bool,
    /// Constrained decoding: Q&A styles' lines alternate Question/Answer labels.
    pub constrain_format: bool,
    /// Memory (MB) for prompt prefixes that later prompts are prefilled from (0: off).
    pub prefix_cache_mb: usize,
    /// Rephrasings are journaled every `journal_rows` results or `journal_s` seconds, so a job
    /// that dies between checkpoints does not generate them again.
    pub journal_rows: usize,
    pub journal_s: u64,
}

impl Default for RephraseSpec {
    fn default() -> Self {
        let d = RephraseConfig::default();
        let r = RemoteConfig::default();
        RephraseSpec {
            model: String::new(),
            endpoint: String::new(),
            served: String::new(),
            api: r.api,
            concurrency: r.concurrency,
            timeout_s: r.timeout_s,
            retry_budget_s: r.retry_budget_s,
            extensions: r.extensions,
            api_key_env: String::new(),
            api_key_file: String::new(),
            styles: "easy,medium,hard,qa".into(),
            seed: 0,
            batch_size: d.generation.batch_size,
            max_new_tokens: None,
            temperature: d.generation.temperature,
            top_p: d.generation.top_p,
            top_k: d.generation.top_k,
            no_repeat_ngram: d.generation.no_repeat_ngram,
            threads: d.session.intra_threads,
            provider: Provider::Cpu,
            time_slice_ms: d.time_slice_ms,
            retries: d.retries,
            retry_temperature: d.retry_temperature,
            constrain_numbers: d.constrain_numbers,
            constrain_names: d.constrain_names,
            constrain_vocabulary: d.constrain_vocabulary,
            resume_retries: d.resume_retries,
            constrain_leaks: d.constrain_leaks,
            constrain_format: d.constrain_format,
            prefix_cache_mb: d.generation.prefix_cache_mb,
            journal_rows: JournalConfig::default().rows,
            journal_s: JournalConfig::default().interval_s,
        }
    }
}

impl RephraseSpec {
    /// The operator's settings; `gates` decide retries.
    pub fn config(&self, gates: &GateConfig) -> RephraseConfig {
        let d = RephraseConfig::default();
        RephraseConfig {
            model: self.model.clone(),
            session: SessionConfig { provider: self.provider, intra_threads: self.threads, ..Default::default() },
            generation: GenerationConfig {
                max_new_tokens: self.max_new_tokens.unwrap_or(d.generation.max_new_tokens),
                batch_size: self.batch_size,
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                seed: self.seed,
                no_repeat_ngram: self.no_repeat_ngram,
                prefix_cache_mb: self.prefix_cache_mb,
                ..d.generation
            },
            time_slice_ms: self.time_slice_ms,
            retries: self.retries,
            retry_temperature: self.retry_temperature,
            retry_gates: gates.clone(),
            constrain_numbers: self.constrain_numbers,
            constrain_names: self.constrain_names,
            constrain_vocabulary: self.constrain_vocabulary,
            resume_retries: self.resume_retries,
            constrain_leaks: self.constrain_leaks,
            constrain_format: self.constrain_format,
            styles: Vec::new(),
        }
    }

    /// The remote backend's settings, if the plan names an endpoint.
    pub fn remote(&self) -> Option<RemoteConfig> {
        (!self.endpoint.is_empty()).then(|| RemoteConfig {
            endpoint: self.endpoint.clone(),
            model: if self.served.is_empty() { self.model.clone() } else { self.served.clone() },
            api: self.api,
            concurrency: self.concurrency,
            timeout_s: self.timeout_s,
            retry_budget_s: self.retry_budget_s,
            extensions: self.extensions,
        })
    }

    pub fn journal(&self) -> JournalConfig {
        JournalConfig { rows: self.journal_rows, interval_s: self.journal_s }
    }

    pub fn style_names(&self) -> Vec<String> {
        self.styles.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}
