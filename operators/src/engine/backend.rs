//! Where rephrasings come from: one trait, [`Backend`], for every way of running a model. The
//! rephrase stage gives a backend [`Request`]s and polls it for [`Answer`]s; it does not know
//! whether the model runs in this process ([`LocalBackend`], ONNX Runtime with continuous
//! batching) or behind an OpenAI-compatible server (`RemoteBackend`, in the `remote` module).
//!
//! A backend that cannot honour a request part (a remote server cannot run the number guard)
//! ignores it; the gate stage judges every answer the same way whatever made it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::constrain::NumberGuard;
use super::decoder::Decoder;
use super::generate::{Batcher, Finish, GenerationConfig, Prompt, SoftStop, Timing};
use super::leak::{LEAK_TOKENS, LeakGuard};
use super::names::NameGuard;

/// One generation: what a style asks of the model for one chunk, in the forms backends need.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Chat turns (`[{"role", "content"}]`): the system message, worked examples, the user turn.
    pub messages: serde_json::Value,
    /// The same as plain few-shot text, for models without a chat template (base models, and
    /// servers' `/completions`).
    pub plain: String,
    /// The start of the answer, which the model continues (`Question:`).
    pub prefix: String,
    pub max_new_tokens: usize,
    /// End-of-sequence is not allowed before this many tokens.
    pub min_new_tokens: usize,
    /// The request's sampling seed (with the backend's own seed).
    pub seed: u64,
    /// Overrides the backend's temperature (a retry samples).
    pub temperature: Option<f32>,
    pub soft_stop: Option<SoftStop>,
    /// Constrained decoding: numbers and names of `source` only (in process, and on a server
    /// that takes wrapflow's extension, such as `wrapflow serve`).
    pub numbers: Option<Arc<NumberGuard>>,
    pub names: Option<Arc<NameGuard>>,
    /// Texts the answer may not copy beyond what `source` says: the style's worked examples
    /// (in process, see [`LeakGuard`]).
    pub examples: Vec<String>,
    /// Hold the answer to Question/Answer pairs (in process, see [`super::qa::QaFormat`]).
    pub qa_format: bool,
    /// The text the guards are built from (the chunk).
    pub source: String,
}

/// A backend's answer to one [`Request`]: the text after the request's prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// Steps at which the number and the name guard overrode the model.
    pub guarded: u32,
    pub names_guarded: u32,
}

/// What made the answers, for each synthetic row's lineage.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lineage {
    /// The model's directory name, or its name as served with the endpoint's host.
    pub model: String,
    /// `blake3:` of the weights, or `endpoint:` and the endpoint's URL without credentials.
    pub weights_hash: String,
}

/// A worker's backend, lent to the rephrase stage that answers with it: the stage borrows it only
/// while it submits or polls, so its owner keeps it for the next dataflow (a Python `Rephraser`
/// answers batch after batch with one model). One backend per rephrase stage: answers carry the
/// backend's own request indices.
pub type SharedBackend = Rc<RefCell<Box<dyn Backend>>>;

/// A backend as a [`SharedBackend`].
pub fn shared(backend: Box<dyn Backend>) -> SharedBackend {
    Rc::new(RefCell::new(backend))
}

/// Runs requests. Not `Send`: a worker owns its backend.
pub trait Backend {
    /// Queues a request; returns its index, which its answer carries.
    fn submit(&mut self, request: Request) -> anyhow::Result<usize>;
    /// Works for about `budget`, handing each finished request to `done`: its answer, or why
    /// this one request failed (the task becomes a reject with that reason). An `Err` is fatal:
    /// the backend cannot go on (a server down for longer than its retry budget), and the
    /// requests still outstanding are not answered.
    fn poll(&mut self, budget: Duration, done: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()>;
    /// Requests submitted and not yet handed back.
    fn outstanding(&self) -> usize;
    fn lineage(&self) -> Lineage;
    /// Whether an answer starts with its request's `prefix` and the model continues it (in
    /// process always; on a server only where it takes the prefix).
    fn continues_prefix(&self) -> bool {
        true
    }
    /// Where the model's time went so far (in process; zero for a server, whose time is its own).
    fn timing(&self) -> Timing {
        Timing::default()
    }
}

/// The prompt text of a request for a model in this process: the chat turns in the model's
/// template (plain text without one), then the answer prefix for the model to continue.
pub fn render(dec: &Decoder, r: &Request) -> anyhow::Result<String> {
    let mut text = match dec.chat_template {
        Some(_) => super::chat_prompt(dec, &r.messages)?,
        None => r.plain.clone(),
    };
    text.push_str(&r.prefix);
    Ok(text)
}

/// The model in this process: one ONNX Runtime session and a continuous [`Batcher`].
pub struct LocalBackend {
    dec: Decoder,
    cfg: GenerationConfig,
    batcher: Batcher,
    /// Indices submitted and not answered, which a failed step must report.
    open: BTreeSet<usize>,
}

impl LocalBackend {
    pub fn new(dec: Decoder, cfg: GenerationConfig) -> Self {
        LocalBackend { dec, batcher: Batcher::new(cfg.clone()), cfg, open: BTreeSet::new() }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }
}

impl Backend for LocalBackend {
    fn submit(&mut self, r: Request) -> anyhow::Result<usize> {
        let text = render(&self.dec, &r)?;
        let ids = self.dec.encode_prompt(&text)?;
        let i = self.batcher.push(Prompt {
            id: String::new(),
            ids,
            max_new_tokens: Some(r.max_new_tokens),
            seed: Some(r.seed),
            soft_stop: r.soft_stop,
            min_new_tokens: r.min_new_tokens,
            temperature: r.temperature,
            numbers: r.numbers,
            names: r.names,
            leaks: (!r.examples.is_empty())
                .then(|| Arc::new(LeakGuard::new(&self.dec.tokenizer, &r.examples, &r.source, LEAK_TOKENS)))
                .filter(|g| !g.is_empty()),
            qa_format: r.qa_format,
            continues: r.prefix,
            ..Default::default()
        });
        self.open.insert(i);
        Ok(i)
    }

    fn poll(&mut self, budget: Duration, done: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !self.batcher.is_idle() && t0.elapsed() < budget {
            let open = &mut self.open;
            let step = self.batcher.step(&mut self.dec, &mut |c| {
                open.remove(&c.index);
                let answer = Answer {
                    text: c.text,
                    finish: c.finish,
                    prompt_tokens: c.prompt_tokens as u32,
                    generated_tokens: c.token_ids.len() as u32,
                    guarded: c.guarded,
                    names_guarded: c.names_guarded,
                };
                done(c.index, Ok(answer));
            });
            if let Err(e) = step {
                // A failed step loses the batch's state: every open request fails, the model stays.
                for i in std::mem::take(&mut self.open) {
                    done(i, Err(format!("{e:#}")));
                }
                self.batcher = Batcher::new(self.cfg.clone());
            }
        }
        Ok(())
    }

    fn outstanding(&self) -> usize {
        self.batcher.outstanding()
    }

    fn timing(&self) -> Timing {
        self.batcher.timing.clone()
    }

    fn lineage(&self) -> Lineage {
        let dir = &self.dec.dir;
        let model = dir.file_name().map_or_else(|| dir.display().to_string(), |f| f.to_string_lossy().into_owned());
        Lineage { model, weights_hash: self.dec.weights_hash.clone() }
    }
}
