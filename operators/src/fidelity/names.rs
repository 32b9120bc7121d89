//! What counts as a name and when a rewrite's name is its source's: the entity gate reads a
//! whole rewrite with [`new_entities`]; the name guard holds each word it lets the model write to
//! the same [`name_key`], [`acronym`] and [`mixed_case`] rules.
//!
//! ```
//! use wrapflow_operators::fidelity::names::new_entities;
//! let src = "Hans Krebs studied the citric acid cycle at Sheffield, where the MRC funded his lab.";
//! let out = "Krebs's work on the cycle at Sheffield was funded by the MRC and praised by Watson.";
//! assert_eq!(new_entities(src, out, &[]), vec!["Watson".to_string()]);
//! ```

use std::collections::HashSet;

pub use super::sentences::word_char;
use super::sentences::{label_end, sentences};

/// Capitalised words that are not names wherever they stand.
pub const NOT_NAMES: [&str; 2] = ["I", "OK"];

/// The format words of Question/Answer styles: not names in a Q&A, names elsewhere (an `easy`
/// rewrite that writes "Answer" mid-sentence has invented it).
pub const QA_LABELS: [&str; 4] = ["Q", "A", "Question", "Answer"];

/// The words of a style's format that are not names in it: a Q&A's labels ([`QA_LABELS`]).
pub fn format_words(qa: bool) -> &'static [&'static str] {
    if qa { &QA_LABELS } else { &[] }
}

/// The form of a name that source and rewrite are compared on: lower case, without a possessive
/// ending and without one plural `s` ("Krebs's" and "Krebs", "Americans" and "American"). An
/// `es` stays: "Hughes" is not "Hugh".
pub fn name_key(word: &str) -> String {
    let w = word.to_lowercase();
    let w = w.strip_suffix("'s").or_else(|| w.strip_suffix("’s")).or_else(|| w.strip_suffix('\'')).unwrap_or(&w);
    let w = w.strip_suffix('’').unwrap_or(w);
    if w.chars().count() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// Whether a word (or the part of it written so far) reads as an acronym: two or more capitals
/// and no lower-case letter.
pub fn acronym(word: &str) -> bool {
    word.chars().filter(|c| c.is_uppercase()).count() >= 2
        && word.chars().all(|c| c.is_uppercase() || c.is_ascii_digit() || c == '\'' || c == '’')
}

/// Whether a word has a capital right after a lower-case letter ("McDonald", "ChristiAniTy"):
/// such a casing must be the source's own, as the words compare in lower case otherwise.
pub fn mixed_case(word: &str) -> bool {
    word.chars().zip(word.chars().skip(1)).any(|(a, b)| a.is_lowercase() && b.is_uppercase())
}

/// A word without its possessive or other apostrophe ending ("I'm" is "I").
pub fn base(word: &str) -> &str {
    word.split(['\'', '’']).next().unwrap_or(word)
}

/// The words of a text, split as names are read.
pub fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !word_char(c)).filter(|w| !w.is_empty())
}

/// The word `text` ends in (empty when it ends in a non-word character).
pub fn trailing_word(text: &str) -> &str {
    let len: usize = text.chars().rev().take_while(|&c| word_char(c)).map(char::len_utf8).sum();
    &text[text.len() - len..]
}

/// A word that names something: an acronym anywhere, or a capitalised word that does not start
/// its sentence.
pub fn is_name(word: &str, starts_sentence: bool) -> bool {
    let capitalised = word.chars().next().is_some_and(char::is_uppercase);
    acronym(word) || (capitalised && !starts_sentence)
}

/// Words of a text as (word, starts a sentence); a Question/Answer label is structure, so the
/// word after it starts its sentence.
fn words(text: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    for s in sentences(text) {
        let body = label_end(s).map_or(s, |e| &s[e..]);
        let mut first = true;
        for w in split_words(body) {
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

/// Names in `output` that `source` does not contain (compared by [`name_key`]), in order of
/// first appearance; `allow` adds words that are never names (a style's [`format_words`]),
/// beside [`NOT_NAMES`]. A mixed-case word must be one of the source's words as written.
pub fn new_entities(source: &str, output: &str, allow: &[&str]) -> Vec<String> {
    let known: HashSet<String> = split_words(source).map(name_key).collect();
    let written: HashSet<&str> = split_words(source).map(base).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (w, first) in words(output) {
        let b = base(w);
        if mixed_case(b) && !written.contains(b) {
            if seen.insert(w.to_string()) {
                out.push(w.to_string());
            }
            continue;
        }
        if !is_name(w, first) || NOT_NAMES.contains(&b) || allow.contains(&w) {
            continue;
        }
        let key = name_key(w);
        if !known.contains(&key) && seen.insert(key) {
            out.push(w.to_string());
        }
    }
    out
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
        assert_eq!(
            new_entities("Mr. Krebs left.", "Then Mr. Watson came.", &[]),
            vec!["Watson"],
            "after an abbreviation"
        );
    }

    #[test]
    fn a_name_is_not_another_name_that_shares_its_stem() {
        let src = "The report was written by Ted Hughes and the Ashes team.";
        assert_eq!(new_entities(src, "It was written by Ted Hugh and the Ash team.", &[]), vec!["Hugh", "Ash"]);
        assert!(new_entities(src, "It was Hughes's report, read by the Ashes' team.", &[]).is_empty());
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
}
