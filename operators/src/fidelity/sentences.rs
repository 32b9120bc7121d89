//! Where sentences end and where a Question/Answer label stands: the gates split a rewrite into
//! sentences with [`sentences`], and the guards ask [`sentence_start`] of the text written so
//! far; both call [`ends_sentence`], so "met Mr. Watson" is one sentence to both.

use std::sync::LazyLock;

use regex::Regex;

/// Abbreviations after which a full stop does not end a sentence.
pub const ABBREVIATIONS: [&str; 12] = ["mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e"];

/// A Question/Answer label of one of `kinds` (`Q:`, `Answer 2:`, `**Question:**`), as a pattern.
fn label(kinds: &str) -> String {
    format!(r"\s*\**\s*({kinds})\s*\d*\s*\**\s*:")
}

/// A line that starts with a question label.
pub static QUESTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("(?im)^{}", label("q|question"))).unwrap());
/// A line that starts with an answer label.
pub static ANSWER: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!("(?im)^{}", label("a|answer"))).unwrap());
/// A text that starts with a label.
static LEADING_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?i)^{}", label("q|question|a|answer"))).unwrap());
/// A text that ends with a label and the spaces or bold markers after it.
static TRAILING_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)^{}[\s*]*$", label("q|question|a|answer"))).unwrap());

/// Whether the stop `stop` after the whitespace-separated word `before` (the text since the last
/// space, the stop not included) ends a sentence, provided whitespace or the line's end follows:
/// a full stop after an abbreviation ("Dr.") or an initial ("J.") does not.
pub fn ends_sentence(before: &str, stop: char) -> bool {
    if !matches!(stop, '.' | '!' | '?' | '…') {
        return false;
    }
    let initial = before.chars().count() == 1 && before.chars().all(char::is_uppercase);
    stop != '.' || !(initial || ABBREVIATIONS.contains(&before.to_lowercase().as_str()))
}

/// Sentences of a text: split after `.`, `!`, `?` (and `…`) followed by whitespace, and at line
/// breaks; not after an abbreviation or an initial ([`ends_sentence`]). Empty pieces are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
            let before = line[start..i].rsplit(char::is_whitespace).next().unwrap_or("");
            if next_is_space && ends_sentence(before, c) {
                let end = i + c.len_utf8();
                out.push(line[start..end].trim());
                start = end;
            }
        }
        out.push(line[start..].trim());
    }
    out.retain(|s| s.chars().any(char::is_alphanumeric));
    out
}

/// Whether a word that follows `before` (the text of its line so far) starts a sentence, as
/// [`sentences`] splits them: the line holds nothing yet, or ends in a stop that
/// [`ends_sentence`] and whitespace, or in a Question/Answer label.
pub fn sentence_start(before: &str) -> bool {
    let t = before.trim_end();
    // Only a text that ends in a colon (and bold markers) can end in a label: the guard asks
    // this for every capitalised token it checks, so the split into sentences is kept for those.
    let label = t.trim_end_matches('*').ends_with(':');
    if t.is_empty() || label && sentences(t).last().is_some_and(|s| TRAILING_LABEL.is_match(s)) {
        return true;
    }
    let Some(stop) = t.chars().last().filter(|_| t.len() < before.len()) else { return false };
    let word = t[..t.len() - stop.len_utf8()].rsplit(char::is_whitespace).next().unwrap_or("");
    ends_sentence(word, stop)
}

/// Where a leading Question/Answer label (with its colon) ends.
pub fn label_end(s: &str) -> Option<usize> {
    LEADING_LABEL.find(s).map(|m| m.end())
}

/// Characters of a word (hyphens separate words).
pub fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '’'
}

/// The claims of a text: its sentences without a leading label ("Answer:", "**Q:**"), those
/// with a word in them.
pub fn claims(text: &str) -> Vec<&str> {
    sentences(text)
        .into_iter()
        .map(|s| label_end(s).map_or(s, |e| s[e..].trim_start_matches(['*', ' '])))
        .filter(|s| s.chars().any(word_char))
        .collect()
}

/// A line's leading label: whether it asks (a question label) and the text after its colon.
pub fn line_label(line: &str) -> Option<(bool, &str)> {
    let m = LEADING_LABEL.captures(line)?;
    Some((m[1].to_lowercase().starts_with('q'), &line[m.get(0)?.end()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_stops_lines_and_labels() {
        let s = sentences("Dr. Who? No. It is 3.5 m long… Yes!\nQuestion: Why?\nAnswer: Because.");
        assert_eq!(s, vec!["Dr. Who?", "No.", "It is 3.5 m long…", "Yes!", "Question: Why?", "Answer: Because."]);
        assert_eq!(sentences("J. K. Rowling wrote it. Then"), vec!["J. K. Rowling wrote it.", "Then"]);
    }

    #[test]
    fn a_word_starts_a_sentence_exactly_where_the_sentences_split() {
        for (before, start) in [
            ("", true),
            ("It worked. ", true),
            ("It worked.", false),
            ("Really? ", true),
            ("He met Mr. ", false),
            ("met Dr. ", false),
            ("by J. ", false),
            ("in the U.S. ", true),
            ("Answer: ", true),
            ("**Question 2:** ", true),
            ("the ratio: ", false),
            ("Fine. Answer: ", true),
            ("praised by ", false),
        ] {
            assert_eq!(sentence_start(before), start, "{before:?}");
            // The gate's reading of the same text with a word after it.
            let text = format!("{before}Watson came");
            let last = sentences(&text).last().copied().unwrap_or("");
            let body = label_end(last).map_or(last, |e| last[e..].trim_start_matches(['*', ' ']));
            assert_eq!(body.starts_with("Watson"), start, "{text:?} reads as {:?}", sentences(&text));
        }
    }

    #[test]
    fn labels_are_read_one_way() {
        assert_eq!(label_end("Question: Why?"), Some(9));
        assert_eq!(label_end("**Answer 2:** Yes"), Some(11));
        assert_eq!(label_end("Quest: no"), None);
        assert!(QUESTION.is_match("x\n **Q1:** y") && ANSWER.is_match("A: y") && !ANSWER.is_match("As: y"));
        assert_eq!(line_label("**Q1:** Why?"), Some((true, "** Why?")));
        assert_eq!(line_label("Answer: Because"), Some((false, " Because")));
    }
}
