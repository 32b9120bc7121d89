//! `REPHRASE WITH (...)`: the plan's rephrasing settings, in process or on a server.

use serde::{Deserialize, Serialize};
use wrapflow_operators::engine::backend::remote::Api;
use wrapflow_operators::engine::{GenerationConfig, Provider, RemoteConfig, SessionConfig};
use wrapflow_operators::io::journal::JournalConfig;
use wrapflow_operators::stages::gates::GateConfig;
use wrapflow_operators::stages::rephrase::RephraseConfig;
use wrapflow_operators::stages::styles::Style;

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
    /// In process, an answer stops at the first sentence that a sentence gate rejects.
    pub stop_early: bool,
    /// Context-aware decoding in process: the weight of the logits without the chunk that are
    /// subtracted from the logits with it (0: off; each prompt is decoded twice).
    pub context_weight: f32,
    /// Constrained decoding: no copying of the worked examples' token n-grams that the chunk
    /// lacks (styles with the leak gate on).
    pub constrain_leaks: bool,
    /// Constrained decoding: Q&A styles' lines alternate Question/Answer labels.
    pub constrain_format: bool,
    /// With the Q&A format, a Q&A may not end before it has answered `min_qa_pairs` questions.
    pub hold_qa_pairs: bool,
    /// Memory (MB) for prompt prefixes that later prompts are prefilled from (0: off).
    pub prefix_cache_mb: usize,
    /// Rephrasings are journaled every `journal_rows` results or `journal_s` seconds, so a job
    /// that dies between checkpoints does not generate them again.
    pub journal_rows: usize,
    pub journal_s: u64,
}

impl Default for RephraseSpec {
    /// The one default of each REPHRASE setting. Decoding and threads differ from the engine's
    /// library defaults (`GenerationConfig`, `SessionConfig`, which `wrapflow serve` and
    /// `generate` start from): 16 sequences a batch, no repeated 4-grams, one thread per worker.
    fn default() -> Self {
        let stage = RephraseConfig::default();
        let remote = RemoteConfig::default();
        let generation = GenerationConfig { batch_size: 16, no_repeat_ngram: 4, ..Default::default() };
        let journal = JournalConfig::default();
        RephraseSpec {
            model: String::new(),
            endpoint: String::new(),
            served: String::new(),
            api: remote.api,
            concurrency: remote.concurrency,
            timeout_s: remote.timeout_s,
            retry_budget_s: remote.retry_budget_s,
            extensions: remote.extensions,
            api_key_env: String::new(),
            api_key_file: String::new(),
            styles: "easy,medium,hard,qa".into(),
            seed: 0,
            batch_size: generation.batch_size,
            max_new_tokens: None,
            temperature: generation.temperature,
            top_p: generation.top_p,
            top_k: generation.top_k,
            no_repeat_ngram: generation.no_repeat_ngram,
            threads: 1,
            provider: Provider::Cpu,
            time_slice_ms: stage.time_slice_ms,
            retries: stage.retries,
            retry_temperature: stage.retry_temperature,
            constrain_numbers: stage.constrain_numbers,
            constrain_names: stage.constrain_names,
            constrain_vocabulary: stage.constrain_vocabulary,
            resume_retries: stage.resume_retries,
            stop_early: stage.stop_early,
            context_weight: stage.context_weight,
            constrain_leaks: stage.constrain_leaks,
            constrain_format: stage.constrain_format,
            hold_qa_pairs: stage.hold_qa_pairs,
            prefix_cache_mb: generation.prefix_cache_mb,
            journal_rows: journal.rows,
            journal_s: journal.interval_s,
        }
    }
}

/// What a worker's rephrasing backend is built from: the model (in process or on a server), its
/// session and decoding settings, and the journal of its answers.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// Model directory; on a server, `remote` names the model.
    pub model: String,
    pub session: SessionConfig,
    /// Decoding settings; a style's `max_new_tokens` overrides `generation.max_new_tokens`.
    pub generation: GenerationConfig,
    pub remote: Option<RemoteConfig>,
    /// Where the server's API key is (an environment variable's name, or a file).
    pub api_key_env: String,
    pub api_key_file: String,
    pub journal: JournalConfig,
}

impl RephraseSpec {
    /// The rephrase stage's settings; `gates` decide retries, `styles` are this REPHRASE's.
    pub fn config(&self, gates: &GateConfig, styles: &[Style]) -> RephraseConfig {
        RephraseConfig {
            time_slice_ms: self.time_slice_ms,
            retries: self.retries,
            retry_temperature: self.retry_temperature,
            retry_gates: gates.clone(),
            constrain_numbers: self.constrain_numbers,
            constrain_names: self.constrain_names,
            constrain_vocabulary: self.constrain_vocabulary,
            resume_retries: self.resume_retries,
            stop_early: self.stop_early,
            context_weight: self.context_weight,
            constrain_leaks: self.constrain_leaks,
            constrain_format: self.constrain_format,
            hold_qa_pairs: self.hold_qa_pairs,
            styles: styles.to_vec(),
        }
    }

    /// The backend's settings.
    pub fn backend(&self) -> BackendConfig {
        let d = GenerationConfig::default();
        BackendConfig {
            model: self.model.clone(),
            session: SessionConfig { provider: self.provider, intra_threads: self.threads, ..Default::default() },
            generation: GenerationConfig {
                max_new_tokens: self.max_new_tokens.unwrap_or(d.max_new_tokens),
                batch_size: self.batch_size,
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                seed: self.seed,
                no_repeat_ngram: self.no_repeat_ngram,
                prefix_cache_mb: self.prefix_cache_mb,
                ..d
            },
            remote: self.remote(),
            api_key_env: self.api_key_env.clone(),
            api_key_file: self.api_key_file.clone(),
            journal: self.journal(),
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

    fn journal(&self) -> JournalConfig {
        JournalConfig { rows: self.journal_rows, interval_s: self.journal_s }
    }

    pub fn style_names(&self) -> Vec<String> {
        self.styles.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }
}
