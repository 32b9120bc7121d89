//! What a model writes around its answer: a leading acknowledgement ("Sure, here is ..."), the
//! prompt's data delimiters echoed back, trailing sign-offs, and refusals.

use std::sync::LazyLock;

use regex::Regex;

static LEAD_CHATTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*(sure|certainly|of course|okay|ok|absolutely|here('s| is| are)|below is|the following is|this is a|(the )?(rephrased|paraphrased|rewritten|simplified) (text|version|paragraph))\b[^\n]{0,100}?(:|\.|!)\s*(\n|$)").unwrap()
});
static TRAIL_CHATTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\n\s*(i hope (this|that) helps|let me know|feel free to|hope this)[^\n]*\s*$").unwrap()
});
static REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(as an ai\b|as a language model|i('m| am) sorry,? but|i cannot (help|assist|provide|rephrase)|i can't (help|assist|provide))").unwrap()
});
/// Removes a leading acknowledgement line and trailing sign-offs; true if anything was removed.
pub fn strip_chatter(text: &str) -> (String, bool) {
    let mut t = text.to_string();
    let mut stripped = false;
    if let Some(m) = LEAD_CHATTER.find(&t)
        && m.end() < t.len()
    {
        t = t[m.end()..].to_string();
        stripped = true;
    }
    // Small models echo the prompt's data delimiters around their answer.
    if let Some(rest) = t.trim_start().strip_prefix("<text>") {
        t = rest.to_string();
        stripped = true;
    }
    if let Some(end) = t.find("</text>") {
        t.truncate(end);
        stripped = true;
    }
    if let Some(m) = TRAIL_CHATTER.find(&t) {
        t.truncate(m.start());
        stripped = true;
    }
    (t.trim().to_string(), stripped)
}

/// Whether `text` may be only the start of a leading acknowledgement line, which
/// [`strip_chatter`] removes once the answer goes on after it.
pub fn only_chatter(text: &str) -> bool {
    strip_chatter(text).0.is_empty() || LEAD_CHATTER.find(text).is_some_and(|m| m.end() >= text.trim_end().len())
}

/// True if the text is a refusal or talks about itself as an AI.
pub fn is_refusal(text: &str) -> bool {
    REFUSAL.is_match(text)
}
