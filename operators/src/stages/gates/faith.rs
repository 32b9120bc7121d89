//! Faithfulness checks of a rewrite against its source chunk: names the source does not have
//! ([`new_entities`]), the share of word n-grams copied verbatim ([`copy_share`]), and the
//! sentences whose support in the source is measured with the gate embedder ([`sentences`]).
//!
//! ```
//! use wrapflow_operators::stages::gates::{copy_share, new_entities};
//! let src = "Hans Krebs studied the citric acid cycle at Sheffield, where the MRC funded his lab.";
//! let out = "Krebs's work on the cycle at Sheffield was funded by the MRC and praised by Watson.";
//! assert_eq!(new_entities(src, out, &[]), vec!["Watson".to_string()]);
//! assert!(copy_share(src, src, 5) > 0.99 && copy_share(src, out, 5) < 0.2);
//! ```

use std::collections::HashSet;

pub use crate::engine::names::{NOT_NAMES, QA_LABELS};
use crate::engine::names::{acronym, mixed_case, stem};
use crate::engine::{Embedder, cosine};

/// Abbreviations after which a full stop does not end a sentence.
const ABBREVIATIONS: [&str; 12] = ["mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e"];

/// Sentences of a text: split after `.`, `!`, `?` (and `…`) followed by whitespace, and at line
/// breaks; not after an abbreviation or an initial ("Dr.", "J."). Empty pieces are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            let next_is_space = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
            let before = line[start..i].rsplit(char::is_whitespace).next().unwrap_or("");
            let initial = before.chars().count() == 1 && before.chars().all(char::is_uppercase);
            let abbreviation = c == '.' && (initial || ABBREVIATIONS.contains(&before.to_lowercase().as_str()));
            if matches!(c, '.' | '!' | '?' | '…') && next_is_space && !abbreviation {
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

/// Words of a text as (word, starts a sentence): split at whitespace and at punctuation other
/// than apostrophes; hyphenated words are split into their parts.
fn words(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    for s in sentences(text) {
        // A label ("Question 2:", "**Answer:**") is structure: the word after it starts the sentence.
        let body = label_end(s).map_or(s, |e| &s[e..]);
        let mut first = true;
        for w in body.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')) {
            let w = w.trim_matches(|c| c == '\'' || c == '’');
            if w.is_empty() {
                continue;
            }
            out.push((w, first));
            first = false;
        }
    }
    out
}

/// Where a leading Question/Answer label (with its colon) ends.
pub(super) fn label_end(s: &str) -> Option<usize> {
    let head: String = s.chars().take(24).collect();
    let colon = head.find(':')?;
    let label = head[..colon].trim_matches(|c: char| c == '*' || c.is_whitespace());
    let label = label.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_whitespace());
    matches!(label.to_lowercase().as_str(), "q" | "a" | "question" | "answer").then_some(colon + 1)
}

/// A word that names something: an acronym (two or more capitals, digits allowed) anywhere, or
/// a capitalised word that does not start its sentence.
fn is_name(word: &str, starts_sentence: bool) -> bool {
    let capitalised = word.chars().next().is_some_and(char::is_uppercase);
    acronym(word) || (capitalised && !starts_sentence)
}

/// The words of a style's format that are not names in it: a Q&A's labels ([`QA_LABELS`]).
pub fn format_words(qa: bool) -> &'static [&'static str] {
    if qa { &QA_LABELS } else { &[] }
}

/// Names in `output` that `source` does not contain (case-insensitively, allowing possessives
/// and plurals), in order of first appearance; `allow` adds words that are never names (a
/// style's [`format_words`]), beside [`NOT_NAMES`].
pub fn new_entities(source: &str, output: &str, allow: &[&str]) -> Vec<String> {
    let known: HashSet<String> = source
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(stem)
        .collect();
    // Words as written: a mixed-case word ("McDonald") must be one of them.
    let written: HashSet<&str> = source
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .map(|w| w.split(['\'', '’']).next().unwrap_or(w))
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (w, first) in words(output) {
        // "I'm", "I've": the part before an apostrophe decides.
        let base = w.split(['\'', '’']).next().unwrap_or(w);
        if mixed_case(base) && !written.contains(base) {
            if seen.insert(w.to_string()) {
                out.push(w.to_string());
            }
            continue;
        }
        if !is_name(w, first) || NOT_NAMES.contains(&base) || allow.contains(&w) {
            continue;
        }
        let s = stem(w);
        if !known.contains(&s) && seen.insert(s) {
            out.push(w.to_string());
        }
    }
    out
}

/// Word `n`-grams of a text, lower-cased (words keep their apostrophes).
pub(crate) fn ngrams(text: &str, n: usize) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.windows(n).map(|w| w.join(" ")).collect()
}

/// Share of the word `n`-grams of `output` that occur verbatim in `source` (0 when the output
/// has fewer than `n` words).
pub fn copy_share(source: &str, output: &str, n: usize) -> f64 {
    let src: HashSet<String> = ngrams(source, n).into_iter().collect();
    let out = ngrams(output, n);
    if out.is_empty() {
        return 0.0;
    }
    out.iter().filter(|g| src.contains(*g)).count() as f64 / out.len() as f64
}

/// Per sentence of `output` that states something (questions and labels aside), its best
/// embedding cosine to a sentence of `source`, in order.
pub fn support(embedder: &mut Embedder, source: &str, output: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let src = sentences(source);
    let claims: Vec<&str> = sentences(output)
        .into_iter()
        .map(|s| label_end(s).map_or(s, |e| s[e..].trim_start_matches(['*', ' '])))
        .filter(|s| !s.ends_with('?') && s.chars().any(char::is_alphanumeric))
        .collect();
    if src.is_empty() || claims.is_empty() {
        return Ok(vec![]);
    }
    let texts: Vec<&str> = src.iter().chain(&claims).copied().collect();
    let v = embedder.embed(&texts)?;
    let (sv, cv) = v.split_at(src.len());
    Ok(claims
        .iter()
        .zip(cv)
        .map(|(c, e)| (c.to_string(), sv.iter().map(|s| cosine(s, e) as f64).fold(f64::NEG_INFINITY, f64::max)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "Hans Krebs was a German-born British biochemist. He discovered the citric acid cycle \
                       at the University of Sheffield in 1937, with support from the MRC. Krebs's students \
                       later led laboratories across Europe.";

    #[test]
    fn a_name_the_source_lacks_is_found_mid_sentence_and_as_an_acronym() {
        let out = "Krebs was a biochemist who worked with Watson on the structure of DNA at Sheffield.";
        assert_eq!(new_entities(SRC, out, &[]), vec!["Watson", "DNA"]);
        let karzai = "The cycle was found at Sheffield, and President Karzai praised the Soviet-Afghan work.";
        assert_eq!(new_entities(SRC, karzai, &[]), vec!["President", "Karzai", "Soviet", "Afghan"]);
    }

    #[test]
    fn odd_capitals_are_new_names_even_for_a_source_word() {
        let src = "The origins of Christianity, said the McDonald's manager.";
        let out = "ChristiAniTy began early, said the McDonald's manager and the MacDonald staff.";
        assert_eq!(new_entities(src, out, &[]), vec!["ChristiAniTy", "MacDonald"]);
    }

    #[test]
    fn possessives_plurals_case_and_sentence_starts_pass() {
        let out = "Krebs' cycle was found in 1937. The Germans and the British both claim him. \
                   Students of krebs worked across europe. University work was funded by the MRC's grants.";
        assert_eq!(new_entities(SRC, out, &[]), Vec::<String>::new());
        let qa = "Question: Where did Krebs work?\nAnswer: At the University of Sheffield.\n\
                  **Question 2:** What did he find?\n**Answer 2:** The citric acid cycle.";
        assert_eq!(new_entities(SRC, qa, &[]), Vec::<String>::new(), "labels and the words after them");
        assert_eq!(new_entities(SRC, "He met Dr Watson.", &["Dr"]), vec!["Watson"]);
        // An easy rewrite seen on held-out BBC text: "Answer" is a Q&A's word, invented elsewhere.
        let easy = "The play also won The Goat or Answer, a prize.";
        assert_eq!(new_entities(SRC, easy, format_words(false)), vec!["Goat", "Answer"]);
        assert_eq!(new_entities(SRC, easy, format_words(true)), vec!["Goat"]);
    }

    #[test]
    fn copy_share_measures_verbatim_five_grams() {
        assert!((copy_share(SRC, SRC, 5) - 1.0).abs() < 1e-9);
        let near_copy = SRC.replace("biochemist", "scientist");
        assert!(copy_share(SRC, &near_copy, 5) > 0.8, "{}", copy_share(SRC, &near_copy, 5));
        let own = "Krebs, a biochemist born in Germany, worked in Britain; in 1937 at Sheffield he found the cycle.";
        assert!(copy_share(SRC, own, 5) < 0.1, "{}", copy_share(SRC, own, 5));
        assert_eq!(copy_share(SRC, "Too short.", 5), 0.0);
    }

    #[test]
    fn sentences_split_at_stops_lines_and_labels() {
        let s = sentences("Dr. Who? No. It is 3.5 m long… Yes!\nQuestion: Why?\nAnswer: Because.");
        assert_eq!(s, vec!["Dr. Who?", "No.", "It is 3.5 m long…", "Yes!", "Question: Why?", "Answer: Because."]);
        assert_eq!(sentences("J. K. Rowling wrote it. Then"), vec!["J. K. Rowling wrote it.", "Then"]);
    }
}
