//! What a generation is asked (settings, prompts) and what it gives back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::guards::constrain::NumberGuard;
use crate::engine::guards::leak::LeakGuard;
use crate::engine::guards::names::NameGuard;

/// Decoding settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    pub max_new_tokens: usize,
    /// Sequences decoded together.
    pub batch_size: usize,
    /// 0 is greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    pub top_p: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    pub seed: u64,
    /// Forbid repeating an n-gram of the *generated* tokens (0 = off); the prompt is not
    /// counted, so copying the source text stays allowed.
    pub no_repeat_ngram: usize,
    /// Stop when the generated text contains one of these (it is cut off).
    pub stop: Vec<String>,
    /// Generate exactly `max_new_tokens` (benchmarks).
    pub ignore_eos: bool,
    /// Memory for prompt prefixes kept to prefill later prompts that start the same way (a
    /// style's instructions and worked example, a retry's whole prompt); 0 turns it off.
    pub prefix_cache_mb: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 256,
            batch_size: 8,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            no_repeat_ngram: 0,
            stop: vec![],
            ignore_eos: false,
            prefix_cache_mb: 1024,
        }
    }
}

/// A prompt, already tokenized.
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub id: String,
    pub ids: Vec<u32>,
    /// Overrides `GenerationConfig::max_new_tokens` for this prompt.
    pub max_new_tokens: Option<usize>,
    /// Seeds this prompt's sampler (with `GenerationConfig::seed`); defaults to its index. Give a
    /// key of the task (document, chunk, style) so outputs don't depend on arrival order.
    pub seed: Option<u64>,
    /// Ends the generation at the first `at` that starts after `after_tokens` generated tokens
    /// (cut there): a rewrite stops at the paragraph break once it has covered about as much as
    /// its source, instead of running on into new text.
    pub soft_stop: Option<SoftStop>,
    /// End-of-sequence is not allowed before this many generated tokens (a Q&A conversation that
    /// stops after its first pair covers too little of its source).
    pub min_new_tokens: usize,
    /// Override `GenerationConfig`'s sampling settings for this prompt (a retry samples; a
    /// server's requests each bring their own).
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub no_repeat_ngram: Option<usize>,
    /// Only numbers of the guard's source may be written (constrained decoding, see
    /// [`NumberGuard`]).
    pub numbers: Option<Arc<NumberGuard>>,
    /// Mid-sentence, only capitalised words of the guard's source may be written (see
    /// [`NameGuard`]).
    pub names: Option<Arc<NameGuard>>,
    /// Token n-grams of the prompt's worked examples that may not be copied (see [`LeakGuard`]).
    pub leaks: Option<Arc<LeakGuard>>,
    /// Hold the text to Question/Answer pairs (see [`QaFormat`](crate::engine::guards::qa::QaFormat)).
    pub qa_format: bool,
    /// With `qa_format`, the least answered pairs before the text may end (end of sequence and
    /// the soft stop wait for them); 0 lets it end anywhere.
    pub qa_min_pairs: usize,
    /// Text that the generation continues on its line (an answer prefix such as `Question:`):
    /// the guard reads counters such as "Question 2:" from it.
    pub continues: String,
    /// Stop strings of this prompt, besides `GenerationConfig::stop`.
    pub stop: Vec<String>,
    /// Context-aware decoding: the same prompt without its source (empty: off), whose logits,
    /// weighted by `context_weight`, are subtracted from this prompt's at every step (see
    /// the `contrast` module).
    pub contrast: Vec<u32>,
    pub context_weight: f32,
    /// Ends the generation early when its text already fails (see [`AnswerCheck`]).
    pub check: Option<AnswerCheck>,
    /// Joins the batch before the prompts queued without this mark: a retry, whose prompt an
    /// earlier attempt left in the prefix cache, runs while the cache still holds it.
    pub ahead: bool,
}

/// A test of an answer's text so far, run each time a sentence of it ends (the token after a
/// `.`, `!` or `?` starts a new sentence or line): `true` means the answer fails whatever
/// follows, so the generation stops there, its text ending with that sentence ([`Finish::Stop`],
/// [`Completion::checked_out`]). The rephrase stage passes its sentence gates, so that an
/// answer that a gate will reject spends no more tokens and its retry can take it up again
/// before the failing sentence.
#[derive(Clone)]
pub struct AnswerCheck(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for AnswerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnswerCheck")
    }
}

/// See [`Prompt::soft_stop`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoftStop {
    pub after_tokens: usize,
    pub at: String,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    Eos,
    Stop,
    Length,
}

/// A finished generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    /// Position of the prompt in the input.
    pub index: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Steps at which the number guard overrode the model's first choice.
    #[serde(default)]
    pub guarded: u32,
    /// Steps at which the name guard overrode it.
    #[serde(default)]
    pub names_guarded: u32,
    /// Whether the prompt's [`AnswerCheck`] ended it.
    #[serde(default)]
    pub checked_out: bool,
}
