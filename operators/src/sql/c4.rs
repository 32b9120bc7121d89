//! C4's line rules (Raffel et al. 2020), as datatrove's `C4QualityFilter` applies them with its
//! defaults: a document keeps only its lines that end in terminal punctuation (not an
//! ellipsis), have at least 3 words, have no word over 1,000 characters and mention neither
//! "javascript" nor a cookie or policy phrase; Wikipedia citation marks are removed; the whole
//! document goes when a kept line holds "lorem ipsum" or a curly bracket, or when its kept lines
//! hold fewer than 5 sentences.
//!
//! ```
//! use wrapflow_operators::sql::c4::c4_clean;
//! let page = "Menu\nThe council met on Tuesday. It approved the budget.[1]\n\
//!             Members said the plan would cost more. Roads come first.\n\
//!             This site uses cookies to improve your visit.\nWork starts in May!";
//! assert_eq!(
//!     c4_clean(page).as_deref(),
//!     Some("The council met on Tuesday. It approved the budget.\n\
//!           Members said the plan would cost more. Roads come first.\nWork starts in May!")
//! );
//! assert_eq!(c4_clean("Too short. Only two sentences here."), None);
//! ```

use std::sync::LazyLock;

use regex::Regex;

/// How a line may end to be kept.
const END_PUNCTUATION: [char; 5] = ['.', '?', '!', '"', '\''];
/// Lines with these (lower-cased) are boilerplate.
const POLICY: [&str; 6] =
    ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];
/// Kept lines must hold at least this many words, and the document this many sentences.
const MIN_WORDS: usize = 3;
const MIN_SENTENCES: usize = 5;
const MAX_WORD_CHARS: usize = 1000;

static CITATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[\d*\]|\[edit\]|\[citation needed\]").unwrap());

/// Words whose full stop does not end a sentence (spaCy's English tokenizer keeps them whole).
const ABBREVIATIONS: [&str; 27] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "rev", "gen", "gov", "sen", "rep", "vs", "inc", "ltd", "co",
    "corp", "jan", "feb", "aug", "sept", "oct", "nov", "dec", "no", "mt",
];

/// Line breaks as Python's `str.splitlines` knows them.
fn line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Whether `word` ends a sentence: it ends in `!` or `?`, or in a full stop that follows a
/// lower-case letter, a digit or two capitals, and it is no abbreviation or initial (`Dr.`,
/// `p.m.`, `J.`) and no ellipsis; closing quotes and brackets after the mark do not matter.
fn ends_sentence(word: &str) -> bool {
    let w = word.trim_end_matches(['"', '\'', ')', ']', '”', '’', '»']);
    if w.ends_with(['!', '?']) {
        return true;
    }
    let Some(body) = w.strip_suffix('.') else { return false };
    if body.ends_with('.') || body.contains('.') || ABBREVIATIONS.contains(&body.to_lowercase().as_str()) {
        return false;
    }
    let mut rev = body.chars().rev();
    match (rev.next(), rev.next()) {
        (Some(a), _) if a.is_lowercase() || a.is_ascii_digit() => true,
        (Some(a), Some(b)) => a.is_uppercase() && b.is_uppercase(),
        _ => false,
    }
}

/// Sentences of one line, as spaCy's rule-based sentencizer counts them: one, plus one for each
/// word that ends a sentence and has a word after it.
pub fn c4_sentences(line: &str) -> usize {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.is_empty() {
        return 0;
    }
    1 + words[..words.len() - 1].iter().filter(|w| ends_sentence(w)).count()
}

/// The document with C4's line rules applied (kept lines joined by `\n`), or `None` when C4
/// drops it.
pub fn c4_clean(text: &str) -> Option<String> {
    let (mut kept, mut sentences) = (Vec::new(), 0);
    for raw in text.split(line_break) {
        let line = raw.trim();
        let (mut words, mut too_long) = (0, false);
        for w in line.split_whitespace() {
            words += 1;
            too_long |= w.chars().count() > MAX_WORD_CHARS;
        }
        if too_long {
            continue;
        }
        let line = CITATION.replace_all(line, "");
        if !line.ends_with(END_PUNCTUATION) || line.ends_with("...") || words < MIN_WORDS {
            continue;
        }
        let lower = line.to_lowercase();
        if lower.contains("lorem ipsum") || line.contains('{') {
            return None;
        }
        if lower.contains("javascript") || POLICY.iter().any(|p| lower.contains(p)) {
            continue;
        }
        sentences += c4_sentences(&line);
        kept.push(line.into_owned());
    }
    (sentences >= MIN_SENTENCES).then(|| kept.join("\n").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: &str = "One sentence here. Two sentences here.\nThree is here. Four is here. Five is here.";

    #[test]
    fn line_rules_keep_what_c4_keeps() {
        assert_eq!(c4_clean(FIVE).as_deref(), Some(FIVE));
        // Each dropped line: no end mark, an ellipsis, two words, javascript, a cookie notice, a
        // word over 1,000 characters.
        let noisy = format!(
            "Home\n{FIVE}\nRead more...\nClick here.\nPlease enable JavaScript to continue.\n\
             We use cookies on this site.\n{} end.",
            "x".repeat(1001)
        );
        assert_eq!(c4_clean(&noisy).as_deref(), Some(FIVE));
        // Citations go before the end mark is read; quotes end a line too.
        let cited = "He won the race.[1]\nShe said \"it was close.\"\n".to_string() + FIVE;
        assert_eq!(
            c4_clean(&cited).unwrap().lines().take(2).collect::<Vec<_>>(),
            ["He won the race.", "She said \"it was close.\""]
        );
        // A line ending in [edit] is read without it: no end mark left.
        assert!(!c4_clean(&format!("History [edit]\n{FIVE}")).unwrap().contains("History"));
    }

    #[test]
    fn whole_documents_go_for_lorem_ipsum_brackets_and_few_sentences() {
        assert_eq!(c4_clean(&format!("{FIVE}\nLorem ipsum dolor sit amet.")), None);
        assert_eq!(c4_clean(&format!("{FIVE}\nThe code was {{ x = 1 }} here.")), None);
        // A bracket or lorem ipsum on a line that is dropped anyway does not count.
        assert!(c4_clean(&format!("{FIVE}\nfunction() {{\nlorem ipsum")).is_some());
        assert_eq!(c4_clean("One here. Two here.\nThree here. Four here."), None, "four sentences");
    }

    #[test]
    fn sentences_are_counted_as_spacy_splits_them() {
        assert_eq!(c4_sentences("Dr. Smith met Mr. Jones at 3 p.m. today. They talked!"), 2);
        assert_eq!(c4_sentences("He said \"stop.\" Then he left. The USA. And J. K. Rowling wrote."), 4);
        assert_eq!(c4_sentences("It was 1997. Wait... then it rained? Yes."), 3);
        assert_eq!(c4_sentences(""), 0);
    }
}
