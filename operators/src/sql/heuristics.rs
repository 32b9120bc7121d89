//! Document-quality heuristics from C4 (Raffel et al. 2020) and Gopher (Rae et al. 2021) as pure
//! functions of the text; the `udf` module exposes each one to SQL under the same name.
//!
//! Definitions (so thresholds mean the same thing everywhere):
//! - a *word* is a maximal run of non-whitespace characters; a *non-symbol word* has at least one
//!   alphanumeric character;
//! - a *line* is a `\n`-separated piece whose trimmed text is not empty;
//! - character counts are Unicode scalar values (`char`s).

use ahash::{AHashMap as HashMap, AHashSet as HashSet};

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
}

fn is_symbol_word(w: &str) -> bool {
    !w.chars().any(char::is_alphanumeric)
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').map(str::trim).filter(|l| !l.is_empty())
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// Number of non-symbol words (Gopher keeps 50..=100,000).
pub fn word_count(text: &str) -> u64 {
    words(text).filter(|w| !is_symbol_word(w)).count() as u64
}

/// Mean length in characters of the non-symbol words (Gopher keeps 3..=10).
pub fn mean_word_length(text: &str) -> f64 {
    let (n, chars) =
        words(text).filter(|w| !is_symbol_word(w)).fold((0usize, 0usize), |(n, c), w| (n + 1, c + w.chars().count()));
    ratio(chars, n)
}

/// Occurrences of `#`, `...` and `…` per non-symbol word (Gopher keeps < 0.1).
pub fn symbol_word_ratio(text: &str) -> f64 {
    let symbols = text.matches('#').count() + text.matches("...").count() + text.matches('…').count();
    ratio(symbols, word_count(text) as usize)
}

/// Share of all words that contain an alphabetic character (Gopher keeps >= 0.8).
pub fn alpha_words_ratio(text: &str) -> f64 {
    let (n, alpha) = words(text).fold((0, 0), |(n, a), w| (n + 1, a + usize::from(w.chars().any(char::is_alphabetic))));
    ratio(alpha, n)
}

/// Words that are one of Gopher's stop words (the, be, to, of, and, that, have, with), ignoring
/// case and surrounding punctuation (Gopher keeps >= 2).
pub fn stopword_count(text: &str) -> u64 {
    const STOP: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];
    words(text)
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| STOP.iter().any(|s| s.eq_ignore_ascii_case(w)))
        .count() as u64
}

const BULLETS: [char; 12] = ['•', '●', '○', '■', '□', '▪', '▫', '‣', '⁃', '◦', '-', '*'];

/// Share of lines that start with a bullet (`•`, `-`, `*`, ...) (Gopher keeps <= 0.9).
pub fn bullet_lines_ratio(text: &str) -> f64 {
    let (n, b) = lines(text).fold((0, 0), |(n, b), l| (n + 1, b + usize::from(l.starts_with(BULLETS))));
    ratio(b, n)
}

/// Share of lines that end with an ellipsis, `...` or `…` (Gopher keeps <= 0.3).
pub fn ellipsis_lines_ratio(text: &str) -> f64 {
    let (n, e) = lines(text).fold((0, 0), |(n, e), l| (n + 1, e + usize::from(l.ends_with("...") || l.ends_with('…'))));
    ratio(e, n)
}

/// Share of lines that end in terminal punctuation: `.` `!` `?` `"` `”` `'` `’` `…` (C4 keeps
/// only such lines; as a document filter, keep a high share).
pub fn punct_end_lines_ratio(text: &str) -> f64 {
    const END: [char; 8] = ['.', '!', '?', '"', '”', '\'', '’', '…'];
    let (n, p) = lines(text).fold((0, 0), |(n, p), l| (n + 1, p + usize::from(l.ends_with(END))));
    ratio(p, n)
}

/// Share of lines that repeat an earlier line of the document (Gopher keeps <= 0.3).
pub fn dup_line_fraction(text: &str) -> f64 {
    let mut seen = HashSet::new();
    let (n, d) = lines(text).fold((0, 0), |(n, d), l| (n + 1, d + usize::from(!seen.insert(l))));
    ratio(d, n)
}

/// Share of line characters in lines that repeat an earlier line (Gopher keeps <= 0.2).
pub fn dup_line_char_fraction(text: &str) -> f64 {
    let mut seen = HashSet::new();
    let (n, d) = lines(text).fold((0, 0), |(n, d), l| {
        let c = l.chars().count();
        (n + c, if seen.insert(l) { d } else { d + c })
    });
    ratio(d, n)
}

/// The words of a text and their total characters, or `None` when there is no n-gram.
fn ngram_words(text: &str, n: usize) -> Option<(Vec<&str>, usize)> {
    let w: Vec<&str> = words(text).collect();
    let total = w.iter().map(|x| x.chars().count()).sum();
    (n > 0 && w.len() >= n).then_some((w, total))
}

/// Share of word characters covered by repeats of a word n-gram seen earlier in the document:
/// each n-gram occurrence after the first marks its words, each word counted once (Gopher keeps
/// 0.15 for n=5 down to 0.10 for n=10).
pub fn dup_ngram_fraction(text: &str, n: usize) -> f64 {
    let Some((w, total)) = ngram_words(text, n) else { return 0.0 };
    let mut seen = HashSet::new();
    let mut dup = vec![false; w.len()];
    for i in 0..=w.len() - n {
        if !seen.insert(&w[i..i + n]) {
            dup[i..i + n].iter_mut().for_each(|d| *d = true);
        }
    }
    let covered: usize = w.iter().zip(&dup).filter(|(_, d)| **d).map(|(x, _)| x.chars().count()).sum();
    ratio(covered, total)
}

/// Share of word characters taken by the most frequent word n-gram, counting each of its
/// occurrences (Gopher keeps 0.20 for n=2, 0.18 for n=3, 0.16 for n=4).
pub fn top_ngram_fraction(text: &str, n: usize) -> f64 {
    let Some((w, total)) = ngram_words(text, n) else { return 0.0 };
    let mut counts: HashMap<&[&str], usize> = HashMap::new();
    for g in w.windows(n) {
        *counts.entry(g).or_default() += 1;
    }
    let best = counts.iter().map(|(g, c)| c * g.iter().map(|x| x.chars().count()).sum::<usize>()).max().unwrap_or(0);
    ratio(best, total)
}

/// Phrases that C4 treats as boilerplate or non-prose, matched case-insensitively in a line.
pub const BAD_PHRASES: [&str; 8] = [
    "lorem ipsum",
    "javascript",
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "enable cookies",
];

fn has_bad_phrase(line: &str) -> bool {
    let l = line.to_lowercase();
    BAD_PHRASES.iter().any(|p| l.contains(p))
}

/// Lines that contain a C4 bad phrase (`lorem ipsum`, `javascript`, `privacy policy`, ...).
pub fn bad_phrase_lines(text: &str) -> u64 {
    lines(text).filter(|l| has_bad_phrase(l)).count() as u64
}

/// Share of lines that contain a C4 bad phrase.
pub fn bad_phrase_ratio(text: &str) -> f64 {
    let (n, b) = lines(text).fold((0, 0), |(n, b), l| (n + 1, b + usize::from(has_bad_phrase(l))));
    ratio(b, n)
}

/// 128-bit xxh3 hash of the text's bytes, as 32 hex digits: fast, and collisions are negligible
/// at 10^10 documents.
pub fn content_hash(text: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

/// Syllables of an English word, by vowel groups (a silent final `e` does not count): the usual
/// approximation behind readability formulas.
pub fn syllables(word: &str) -> u64 {
    let w: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).flat_map(char::to_lowercase).collect();
    if w.is_empty() {
        return 0;
    }
    let vowel = |c: char| "aeiouy".contains(c);
    let mut groups = 0;
    let mut prev = false;
    for &c in &w {
        let v = vowel(c);
        if v && !prev {
            groups += 1;
        }
        prev = v;
    }
    let n = w.len();
    if groups > 1 && w[n - 1] == 'e' && !vowel(w[n - 2]) && !(n >= 3 && w[n - 2] == 'l' && !vowel(w[n - 3])) {
        groups -= 1; // "make", but not "table"
    }
    groups.max(1)
}

/// Flesch-Kincaid grade level: `0.39 · words/sentences + 11.8 · syllables/words − 15.59` (US
/// school grade; higher reads harder). 0 for text without words.
pub fn flesch_kincaid_grade(text: &str) -> f64 {
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).collect();
    if words.is_empty() {
        return 0.0;
    }
    let sentences = text
        .split(['.', '!', '?', '\n'])
        .filter(|s| s.split_whitespace().any(|w| w.chars().any(char::is_alphabetic)))
        .count()
        .max(1);
    let syl: u64 = words.iter().map(|w| syllables(w)).sum();
    0.39 * words.len() as f64 / sentences as f64 + 11.8 * syl as f64 / words.len() as f64 - 15.59
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "The cat sat.\nThe cat sat.\n- item one\nIs it ... over…\n\n# Title";

    #[test]
    fn readability() {
        assert_eq!([syllables("cat"), syllables("make"), syllables("table"), syllables("erudite")], [1, 1, 2, 3]);
        // 6 words, 1 sentence, 6 syllables: 0.39·6 + 11.8·1 − 15.59
        assert!((flesch_kincaid_grade("The cat sat on the mat.") - (0.39 * 6.0 + 11.8 - 15.59)).abs() < 1e-9);
        let hard = "Notwithstanding considerable institutional opposition, the municipality authorised substantial expenditure.";
        assert!(
            flesch_kincaid_grade(hard) > flesch_kincaid_grade("The town will spend a lot. Some people said no.") + 10.0
        );
    }

    #[test]
    fn word_level() {
        // words: The cat sat. The cat sat. - item one Is it ... over… # Title  (15 tokens)
        // symbol words: "-", "...", "#" -> 12 non-symbol words
        assert_eq!(word_count(DOC), 12);
        // non-symbol word chars: 3+3+4 +3+3+4 +4+3 +2+2 +5 +5 = 41
        assert!((mean_word_length(DOC) - 41.0 / 12.0).abs() < 1e-12);
        // symbols: '#' x1, "..." x1, '…' x1 = 3 over 12 words
        assert!((symbol_word_ratio(DOC) - 3.0 / 12.0).abs() < 1e-12);
        // alphabetic words: 12 of 15
        assert!((alpha_words_ratio(DOC) - 12.0 / 15.0).abs() < 1e-12);
        assert_eq!(stopword_count("The end of THE road, and to be."), 6);
        assert_eq!(stopword_count(""), 0);
    }

    #[test]
    fn line_level() {
        // non-empty lines: 5
        assert!((bullet_lines_ratio(DOC) - 1.0 / 5.0).abs() < 1e-12);
        assert!((ellipsis_lines_ratio(DOC) - 1.0 / 5.0).abs() < 1e-12);
        // ending in terminal punctuation: "The cat sat." x2 and "…" line
        assert!((punct_end_lines_ratio(DOC) - 3.0 / 5.0).abs() < 1e-12);
        assert!((dup_line_fraction(DOC) - 1.0 / 5.0).abs() < 1e-12);
        // chars: 12 + 12 + 10 + 15 + 7 = 56, duplicate 12
        assert!((dup_line_char_fraction(DOC) - 12.0 / 56.0).abs() < 1e-12);
        assert_eq!(ratio(0, 0), 0.0);
        assert_eq!(bullet_lines_ratio(""), 0.0);
    }

    #[test]
    fn ngrams() {
        let t = "a b c a b c d";
        // 2-grams: ab bc ca ab(dup) bc(dup) cd -> words 3,4,5 marked: 3 chars of 7
        assert!((dup_ngram_fraction(t, 2) - 3.0 / 7.0).abs() < 1e-12);
        // 3-gram "a b c" repeats at 3: words 3..6 -> 3 of 7
        assert!((dup_ngram_fraction(t, 3) - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(dup_ngram_fraction(t, 5), 0.0);
        assert_eq!(dup_ngram_fraction("a", 2), 0.0);
        // top 2-gram "a b" (or "b c") x2 -> 4 chars of 7
        assert!((top_ngram_fraction(t, 2) - 4.0 / 7.0).abs() < 1e-12);
        assert!((top_ngram_fraction("aa bb aa bb", 2) - 8.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn bad_phrases_and_hash() {
        let t = "Lorem Ipsum dolor\nEnable JavaScript to view\nfine line";
        assert_eq!(bad_phrase_lines(t), 2);
        assert!((bad_phrase_ratio(t) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(content_hash("abc"), content_hash("abc"));
        assert_ne!(content_hash("abc"), content_hash("abd"));
        assert_eq!(content_hash("").len(), 32);
    }
}
