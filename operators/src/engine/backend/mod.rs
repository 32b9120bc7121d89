//! Where rephrasings come from: one trait, [`Backend`], for every way of running a model. The
//! rephrase stage gives a backend [`Request`]s and polls it for [`Answer`]s; it does not know
//! whether the model runs in this process ([`LocalBackend`], ONNX Runtime with continuous
//! batching) or behind an OpenAI-compatible server (`RemoteBackend`, in the `remote` module).
//!
//! A backend that cannot honour a request part (a remote server cannot run the number guard)
//! ignores it; the gate stage judges every answer the same way whatever made it.

pub mod local;
pub mod remote;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::decode::generate::{AnswerCheck, Finish, SoftStop, Timing};
use crate::engine::guards::constrain::NumberGuard;
use crate::engine::guards::names::NameGuard;

pub use local::LocalBackend;

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
    /// (in process, see [`LeakGuard`](crate::engine::guards::leak::LeakGuard)).
    pub examples: Vec<String>,
    /// Hold the answer to Question/Answer pairs (in process, see [`crate::engine::guards::qa::QaFormat`]).
    pub qa_format: bool,
    /// With `qa_format`, the least answered pairs before the answer may end (in process).
    pub qa_min_pairs: usize,
    /// The text the guards are built from (the chunk).
    pub source: String,
    /// Context-aware decoding (in process, see [`crate::engine::decode::contrast`]): the same
    /// request without its source, whose logits are subtracted at this weight.
    pub contrast: Option<Contrast>,
    /// Stop the answer at the first sentence after which it fails (in process, see
    /// [`AnswerCheck`]); the check sees the request's prefix and what follows it.
    pub check: Option<AnswerCheck>,
    /// Queued before requests without this mark (a retry; in process, see `Prompt::ahead`).
    pub ahead: bool,
}

/// A [`Request`]'s contrast: its chat turns and plain text with the source left out (the answer
/// prefix is the request's), and the weight of their logits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contrast {
    pub messages: serde_json::Value,
    pub plain: String,
    pub weight: f32,
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
    /// Whether the request's [`AnswerCheck`] ended it (its text ends with the failing sentence).
    pub checked_out: bool,
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
