//! Document-quality heuristics from C4 (Raffel et al. 2020) and Gopher (Rae et al. 2021) as pure
//! functions of the text; the `udf` module exposes each one to SQL under the same name.
//!
//! Definitions (so thresholds mean the same thing everywhere):
//! - a *word* is a maximal run of non-whitespace characters; a *non-symbol word* has at least one
//!   alphanumeric character;
//! - a *line* is a `\n`-separated piece whose trimmed text is not empty;
//! - character counts are Unicode scalar values (`char`s).
//!
//! The word and line rules are read off [`TextStats`], which counts them all in one walk; the SQL
//! functions share one count per text.

use std::hash::Hasher;

use ahash::AHasher;
use hashbrown::HashTable;

pub use crate::sql::stats::{BAD_PHRASES, TextStats};

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// Number of non-symbol words (Gopher keeps 50..=100,000).
pub fn word_count(text: &str) -> u64 {
    TextStats::of(text).alnum_words
}

/// Mean length in characters of the non-symbol words (Gopher keeps 3..=10).
pub fn mean_word_length(text: &str) -> f64 {
    TextStats::of(text).mean_word_length()
}

/// Occurrences of `#`, `...` and `…` per non-symbol word (Gopher keeps < 0.1).
pub fn symbol_word_ratio(text: &str) -> f64 {
    TextStats::of(text).symbol_word_ratio()
}

/// Share of all words that contain an alphabetic character (Gopher keeps >= 0.8).
pub fn alpha_words_ratio(text: &str) -> f64 {
    TextStats::of(text).alpha_words_ratio()
}

/// Words that are one of Gopher's stop words (the, be, to, of, and, that, have, with), ignoring
/// case and surrounding punctuation (Gopher keeps >= 2).
pub fn stopword_count(text: &str) -> u64 {
    TextStats::of(text).stop_words
}

/// Share of lines that start with a bullet (`•`, `-`, `*`, ...) (Gopher keeps <= 0.9).
pub fn bullet_lines_ratio(text: &str) -> f64 {
    TextStats::of(text).bullet_lines_ratio()
}

/// Share of lines that end with an ellipsis, `...` or `…` (Gopher keeps <= 0.3).
pub fn ellipsis_lines_ratio(text: &str) -> f64 {
    TextStats::of(text).ellipsis_lines_ratio()
}

/// Share of lines that end in terminal punctuation: `.` `!` `?` `"` `”` `'` `’` `…` (C4 keeps
/// only such lines; as a document filter, keep a high share).
pub fn punct_end_lines_ratio(text: &str) -> f64 {
    TextStats::of(text).punct_end_lines_ratio()
}

/// Share of lines that repeat an earlier line of the document (Gopher keeps <= 0.3).
pub fn dup_line_fraction(text: &str) -> f64 {
    TextStats::of(text).dup_line_fraction()
}

/// Share of line characters in lines that repeat an earlier line (Gopher keeps <= 0.2).
pub fn dup_line_char_fraction(text: &str) -> f64 {
    TextStats::of(text).dup_line_char_fraction()
}

/// Lines that contain a C4 bad phrase (`lorem ipsum`, `javascript`, `privacy policy`, ...).
pub fn bad_phrase_lines(text: &str) -> u64 {
    TextStats::of(text).bad_phrase_lines
}

/// Share of lines that contain a C4 bad phrase.
pub fn bad_phrase_ratio(text: &str) -> f64 {
    TextStats::of(text).bad_phrase_ratio()
}

/// The heuristics above from counts already taken (the SQL functions share one count per text).
impl TextStats {
    pub fn mean_word_length(&self) -> f64 {
        ratio(self.alnum_chars, self.alnum_words)
    }
    pub fn symbol_word_ratio(&self) -> f64 {
        ratio(self.symbols, self.alnum_words)
    }
    pub fn alpha_words_ratio(&self) -> f64 {
        ratio(self.alpha_words, self.words)
    }
    pub fn bullet_lines_ratio(&self) -> f64 {
        ratio(self.bullet_lines, self.lines)
    }
    pub fn ellipsis_lines_ratio(&self) -> f64 {
        ratio(self.ellipsis_lines, self.lines)
    }
    pub fn punct_end_lines_ratio(&self) -> f64 {
        ratio(self.end_mark_lines, self.lines)
    }
    pub fn dup_line_fraction(&self) -> f64 {
        ratio(self.dup_lines, self.lines)
    }
    pub fn dup_line_char_fraction(&self) -> f64 {
        ratio(self.dup_line_chars, self.line_chars)
    }
    pub fn bad_phrase_ratio(&self) -> f64 {
        ratio(self.bad_phrase_lines, self.lines)
    }
}

/// A text's words with each one's hash and characters, their total characters, and the n-gram
/// length. Each word is hashed once; an n-gram's hash mixes its words' hashes, and the tables
/// compare the words themselves, so counts stay exact.
struct Grams<'a> {
    words: Vec<&'a str>,
    hashes: Vec<u64>,
    chars: Vec<u64>,
    total: u64,
    n: usize,
}

impl<'a> Grams<'a> {
    /// `None` when the text has fewer than `n` words (or `n` is 0).
    fn of(text: &'a str, n: usize) -> Option<Self> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if n == 0 || words.len() < n {
            return None;
        }
        let ascii = text.is_ascii();
        let chars: Vec<u64> =
            words.iter().map(|w| if ascii { w.len() as u64 } else { w.chars().count() as u64 }).collect();
        let hashes = words
            .iter()
            .map(|w| {
                let mut h = AHasher::default();
                h.write(w.as_bytes());
                h.finish()
            })
            .collect();
        Some(Grams { total: chars.iter().sum(), words, hashes, chars, n })
    }

    /// Hash of the n-gram starting at word `i`.
    fn hash(&self, i: usize) -> u64 {
        self.hashes[i..i + self.n].iter().fold(0u64, |h, w| (h.rotate_left(5) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn same(&self, i: usize, j: usize) -> bool {
        self.words[i..i + self.n] == self.words[j..j + self.n]
    }

    fn starts(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.words.len() - self.n
    }
}

/// Share of word characters covered by repeats of a word n-gram seen earlier in the document:
/// each n-gram occurrence after the first marks its words, each word counted once (Gopher keeps
/// 0.15 for n=5 down to 0.10 for n=10).
pub fn dup_ngram_fraction(text: &str, n: usize) -> f64 {
    let Some(g) = Grams::of(text, n) else { return 0.0 };
    let mut seen: HashTable<usize> = HashTable::with_capacity(g.words.len());
    let mut dup = vec![false; g.words.len()];
    for i in g.starts() {
        let h = g.hash(i);
        if seen.find(h, |&j| g.same(i, j)).is_some() {
            dup[i..i + n].iter_mut().for_each(|d| *d = true);
        } else {
            seen.insert_unique(h, i, |&j| g.hash(j));
        }
    }
    let covered: u64 = g.chars.iter().zip(&dup).filter(|(_, d)| **d).map(|(c, _)| c).sum();
    ratio(covered, g.total)
}

/// Share of word characters taken by the most frequent word n-gram, counting each of its
/// occurrences (Gopher keeps 0.20 for n=2, 0.18 for n=3, 0.16 for n=4).
pub fn top_ngram_fraction(text: &str, n: usize) -> f64 {
    let Some(g) = Grams::of(text, n) else { return 0.0 };
    // (first start, occurrences) per distinct n-gram.
    let mut counts: HashTable<(usize, u64)> = HashTable::with_capacity(g.words.len());
    for i in g.starts() {
        let h = g.hash(i);
        match counts.find_mut(h, |&(j, _)| g.same(i, j)) {
            Some((_, c)) => *c += 1,
            None => {
                counts.insert_unique(h, (i, 1), |&(j, _)| g.hash(j));
            }
        }
    }
    let best = counts.iter().map(|&(i, c)| c * g.chars[i..i + n].iter().sum::<u64>()).max().unwrap_or(0);
    ratio(best, g.total)
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

    /// The definitions, one walk per heuristic, as they were written before the shared counts.
    mod reference {
        use std::collections::{HashMap, HashSet};
        fn words(t: &str) -> impl Iterator<Item = &str> {
            t.split_whitespace()
        }
        fn lines(t: &str) -> impl Iterator<Item = &str> {
            t.split('\n').map(str::trim).filter(|l| !l.is_empty())
        }
        fn symbol(w: &str) -> bool {
            !w.chars().any(char::is_alphanumeric)
        }
        fn ratio(a: usize, b: usize) -> f64 {
            if b == 0 { 0.0 } else { a as f64 / b as f64 }
        }
        pub fn all(t: &str) -> [f64; 12] {
            let ns: Vec<&str> = words(t).filter(|w| !symbol(w)).collect();
            let wc = ns.len();
            let mwl = ratio(ns.iter().map(|w| w.chars().count()).sum(), wc);
            let sym = t.matches('#').count() + t.matches("...").count() + t.matches('…').count();
            let all: Vec<&str> = words(t).collect();
            let alpha = ratio(all.iter().filter(|w| w.chars().any(char::is_alphabetic)).count(), all.len());
            const STOP: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];
            let stop = all
                .iter()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| STOP.iter().any(|s| s.eq_ignore_ascii_case(w)))
                .count();
            let ls: Vec<&str> = lines(t).collect();
            let n = ls.len();
            let share = |f: &dyn Fn(&str) -> bool| ratio(ls.iter().filter(|l| f(l)).count(), n);
            let mut seen = HashSet::new();
            let dup = ls.iter().filter(|l| !seen.insert(**l)).count();
            let mut seen = HashSet::new();
            let (mut chars, mut dchars) = (0, 0);
            for l in &ls {
                let c = l.chars().count();
                chars += c;
                if !seen.insert(*l) {
                    dchars += c;
                }
            }
            let bad = |l: &str| crate::sql::stats::BAD_PHRASES.iter().any(|p| l.to_lowercase().contains(p));
            [
                wc as f64,
                mwl,
                ratio(sym, wc),
                alpha,
                stop as f64,
                share(&|l| l.starts_with(crate::sql::stats::BULLETS)),
                share(&|l| l.ends_with("...") || l.ends_with('…')),
                share(&|l| l.ends_with(crate::sql::stats::END_MARKS)),
                ratio(dup, n),
                ratio(dchars, chars),
                ls.iter().filter(|l| bad(l)).count() as f64,
                share(&bad),
            ]
        }
        pub fn ngrams(t: &str, n: usize) -> (f64, f64) {
            let w: Vec<&str> = words(t).collect();
            if n == 0 || w.len() < n {
                return (0.0, 0.0);
            }
            let total = w.iter().map(|x| x.chars().count()).sum();
            let mut seen = HashSet::new();
            let mut dup = vec![false; w.len()];
            for i in 0..=w.len() - n {
                if !seen.insert(&w[i..i + n]) {
                    dup[i..i + n].iter_mut().for_each(|d| *d = true);
                }
            }
            let covered = w.iter().zip(&dup).filter(|(_, d)| **d).map(|(x, _)| x.chars().count()).sum();
            let mut counts: HashMap<&[&str], usize> = HashMap::new();
            for g in w.windows(n) {
                *counts.entry(g).or_default() += 1;
            }
            let best = counts.iter().map(|(g, c)| c * g.iter().map(|x| x.chars().count()).sum::<usize>()).max();
            (ratio(covered, total), ratio(best.unwrap_or(0), total))
        }
    }

    #[test]
    fn shared_counts_equal_one_walk_per_heuristic_on_random_texts() {
        // Pieces that exercise each rule: Unicode spaces and line breaks, bullets, ellipses,
        // symbols, stop words in any case and punctuation, bad phrases (one behind a Kelvin sign
        // that lower-cases to ASCII), non-ASCII letters and digits.
        const PIECES: [&str; 24] = [
            "the",
            "The",
            "THE,",
            "(of)",
            "cat",
            "sat.",
            "...",
            "…",
            "#",
            "- ",
            "•",
            " ",
            "\n",
            "\n\n",
            "\u{a0}",
            "\u{2003}",
            "\t",
            "Café",
            "naïve",
            "٣٤",
            "42",
            "JavaScript",
            "privacy \u{212a}policy",
            "lorem ipsum",
        ];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % m as u64) as usize
        };
        for case in 0..3000 {
            let len = next(60);
            let mut t = String::new();
            for _ in 0..len {
                t.push_str(PIECES[next(PIECES.len())]);
                if next(3) > 0 {
                    t.push(' ');
                }
            }
            let s = TextStats::of(&t);
            let got = [
                s.alnum_words as f64,
                s.mean_word_length(),
                s.symbol_word_ratio(),
                s.alpha_words_ratio(),
                s.stop_words as f64,
                s.bullet_lines_ratio(),
                s.ellipsis_lines_ratio(),
                s.punct_end_lines_ratio(),
                s.dup_line_fraction(),
                s.dup_line_char_fraction(),
                s.bad_phrase_lines as f64,
                s.bad_phrase_ratio(),
            ];
            assert_eq!(got, reference::all(&t), "case {case}: {t:?}");
            for n in [1, 2, 3, 5] {
                let want = reference::ngrams(&t, n);
                assert_eq!((dup_ngram_fraction(&t, n), top_ngram_fraction(&t, n)), want, "case {case} n={n}: {t:?}");
            }
        }
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
