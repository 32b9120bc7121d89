//! The [`Request`] a task's attempt makes of the backend: its prompt in the style's words, its
//! budgets and seed, the guards it decodes under, and the check that stops it early.

use std::sync::Arc;

use crate::engine::backend::Contrast;
use crate::engine::backend::local::render;
use crate::engine::{AnswerCheck, Decoder, NameGuard, NumberGuard, Request, SoftStop};
use crate::stages::fanout::StyleTask;
use crate::stages::gates::flagged::sentence_gates;
use crate::stages::gates::{GateConfig, Verdict, check_style, format_words, only_chatter};
use crate::stages::rephrase::config::RephraseConfig;
use crate::stages::styles::Style;

/// The sampling seed of a task: a key of the task itself, so that the same chunk and style get
/// the same output whatever worker, batch or order it lands in.
pub fn task_seed(task: &StyleTask, style: &Style) -> u64 {
    let key = format!("{}\u{0}{}\u{0}{}", task.chunk.doc_id, task.chunk.chunk_index, style.name);
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The prompt text of a task for a model in this process: the style's chat turns in the
/// model's template (plain few-shot text without one), then the answer prefix.
pub fn prompt_text(dec: &Decoder, style: &Style, chunk: &str) -> anyhow::Result<String> {
    let request = Request {
        messages: style.messages(chunk),
        plain: plain_text(style, chunk),
        prefix: style.answer_prefix.clone(),
        ..Default::default()
    };
    render(dec, &request)
}

/// A style as plain few-shot text (models without a chat template, servers' `/completions`).
pub fn plain_text(style: &Style, chunk: &str) -> String {
    let mut t = format!("{}\n\n", style.system);
    for e in &style.examples {
        t.push_str(&format!("{}\n\n{}\n\n", style.user_turn(&e.chunk), e.answer));
    }
    t + &style.user_turn(chunk) + "\n\n"
}

/// What a retry adds to the user turn of an answer that copied its source.
pub const OWN_WORDS: &str = "Write it in your own words: do not copy phrases from the text.";

/// The style with [`OWN_WORDS`] after its user turn.
pub fn own_words(style: &Style) -> Style {
    Style { user: format!("{}\n\n{OWN_WORDS}", style.user), ..style.clone() }
}

/// The request of a task's `attempt` (0 is the first; retries sample at `retry_temperature` with
/// their own seed, so they differ from the first answer and from each other, reproducibly). A
/// retry that continues `kept` (the start of an earlier answer) has the token budgets less what
/// `kept` already spent, counted at its chunk's tokens per byte.
pub(super) fn task_request(style: &Style, task: &StyleTask, attempt: u32, cfg: &RephraseConfig, kept: &str) -> Request {
    let n = task.chunk.n_tokens as f64;
    let chunk = &task.chunk.text;
    let spent = (kept.len() as f64 * n / chunk.len().max(1) as f64).round() as usize;
    Request {
        messages: style.messages(chunk),
        plain: plain_text(style, chunk),
        prefix: if kept.is_empty() { style.answer_prefix.clone() } else { kept.to_string() },
        // At least a sentence's worth stays for the continuation.
        max_new_tokens: style.max_new_tokens.saturating_sub(spent).max(style.max_new_tokens.min(16)),
        seed: task_seed(task, style).wrapping_add(attempt as u64),
        soft_stop: (style.stop_after > 0.0).then(|| SoftStop {
            after_tokens: ((style.stop_after * n).ceil() as usize).saturating_sub(spent),
            at: style.stop_at.clone(),
        }),
        min_new_tokens: ((style.min_length * n) as usize).saturating_sub(spent),
        temperature: (attempt > 0).then_some(cfg.retry_temperature),
        numbers: guards_numbers(style, cfg).then(|| Arc::new(NumberGuard::new(chunk))),
        names: guards_names(style, cfg).then(|| {
            let guard = NameGuard::new(chunk, format_words(style.qa_format));
            Arc::new(if cfg.constrain_vocabulary { guard.with_vocabulary(chunk) } else { guard })
        }),
        qa_format: style.qa_format && cfg.constrain_format && style.gate_on("format"),
        qa_min_pairs: if cfg.hold_qa_pairs { cfg.retry_gates.min_qa_pairs } else { 0 },
        examples: if cfg.constrain_leaks && style.gate_on("leak") {
            style.examples.iter().flat_map(|e| [e.chunk.clone(), e.answer.clone()]).collect()
        } else {
            vec![]
        },
        source: chunk.clone(),
        contrast: (cfg.context_weight > 0.0).then(|| Contrast {
            messages: style.messages(""),
            plain: plain_text(style, ""),
            weight: cfg.context_weight,
        }),
        ahead: attempt > 0,
        check: cfg.stop_early.then(|| sentence_check(style, &cfg.retry_gates, chunk)),
    }
}

/// The check that stops an answer at its first sentence that `style`'s sentence gates reject
/// (see [`RephraseConfig::stop_early`]).
pub(super) fn sentence_check(style: &Style, gates: &GateConfig, source: &str) -> AnswerCheck {
    let (style, gates, source) = (sentence_gates(style), gates.clone(), source.to_string());
    AnswerCheck(Arc::new(move |text: &str| {
        !only_chatter(text) && matches!(check_style(&source, text, false, &style, &gates), Verdict::Reject { .. })
    }))
}

/// Whether the style's names are constrained: the option is on, and so is its entity gate.
fn guards_names(style: &Style, cfg: &RephraseConfig) -> bool {
    cfg.constrain_names && cfg.retry_gates.entity_fidelity && style.gate_on("entities")
}

/// Whether the style's numbers are constrained: the option is on, and so is its number gate.
fn guards_numbers(style: &Style, cfg: &RephraseConfig) -> bool {
    cfg.constrain_numbers && cfg.retry_gates.number_fidelity && style.gate_on("numbers")
}
