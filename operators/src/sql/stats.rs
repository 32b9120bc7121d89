//! One pass over a text for every word and line count behind the Gopher and C4 heuristics
//! ([`TextStats`]), and a per-thread memo of per-row results keyed by the text's content
//! (`memoized`).
//!
//! A plan's `WHERE` calls a dozen heuristics on the same column; each used to walk every text
//! again. The memo lets the first call of a batch compute all counts and the others read them.
//! It is keyed by content (xxh3-128), not by array identity, because DataFusion hands the same
//! texts over in different arrays: a filter pushed through a view evaluates the view's
//! `c4_clean(text)` once for the filter and again, on the kept rows, for the projection.

use std::cell::RefCell;
use std::thread::LocalKey;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use arrow::array::{Array, StringArray};

/// Bullet marks that start a Gopher bullet line.
pub const BULLETS: [char; 12] = ['•', '●', '○', '■', '□', '▪', '▫', '‣', '⁃', '◦', '-', '*'];
/// Marks a line may end with to count as ending in terminal punctuation.
pub const END_MARKS: [char; 8] = ['.', '!', '?', '"', '”', '\'', '’', '…'];
/// Gopher's stop words.
pub const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];
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

/// Word and line counts of one text (the heuristics module defines what each counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextStats {
    /// Whitespace-separated words.
    pub words: u64,
    /// Words with an alphanumeric character (non-symbol words), and their characters.
    pub alnum_words: u64,
    pub alnum_chars: u64,
    /// Words with an alphabetic character.
    pub alpha_words: u64,
    /// Words that are a stop word once surrounding punctuation is trimmed (any case).
    pub stop_words: u64,
    /// Occurrences of `#`, `...` and `…`.
    pub symbols: u64,
    /// Non-empty trimmed `\n` lines, and those that start with a bullet, end with an ellipsis,
    /// end with terminal punctuation, repeat an earlier line, or hold a bad phrase.
    pub lines: u64,
    pub bullet_lines: u64,
    pub ellipsis_lines: u64,
    pub end_mark_lines: u64,
    pub dup_lines: u64,
    pub bad_phrase_lines: u64,
    /// Characters of all lines, and of the repeated ones.
    pub line_chars: u64,
    pub dup_line_chars: u64,
}

/// Characters of `s`: its length when ASCII, which most web text is.
fn chars(s: &str) -> u64 {
    if s.is_ascii() { s.len() as u64 } else { s.chars().count() as u64 }
}

/// Whether a line holds a bad phrase; `buf` is reused for the lower-cased line. A non-ASCII line
/// is lower-cased by Unicode's rules, which can map a non-ASCII letter to an ASCII one (the
/// Kelvin sign to `k`).
fn has_bad_phrase(line: &str, buf: &mut String) -> bool {
    buf.clear();
    if line.is_ascii() {
        buf.push_str(line);
        buf.make_ascii_lowercase();
    } else {
        buf.extend(line.chars().flat_map(char::to_lowercase));
    }
    BAD_PHRASES.iter().any(|p| buf.contains(p))
}

impl TextStats {
    /// Counts everything in one walk over the words and one over the lines.
    pub fn of(text: &str) -> Self {
        let mut s = TextStats {
            symbols: (text.matches('#').count() + text.matches("...").count() + text.matches('…').count()) as u64,
            ..Default::default()
        };
        for w in text.split_whitespace() {
            s.add_word(w);
        }
        let mut seen = HashSet::new();
        let mut buf = String::new();
        for l in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
            let c = chars(l);
            s.lines += 1;
            s.line_chars += c;
            s.bullet_lines += u64::from(l.starts_with(BULLETS));
            s.ellipsis_lines += u64::from(l.ends_with("...") || l.ends_with('…'));
            s.end_mark_lines += u64::from(l.ends_with(END_MARKS));
            if !seen.insert(l) {
                s.dup_lines += 1;
                s.dup_line_chars += c;
            }
            s.bad_phrase_lines += u64::from(has_bad_phrase(l, &mut buf));
        }
        s
    }

    fn add_word(&mut self, w: &str) {
        self.words += 1;
        let (alnum, alpha) = if w.is_ascii() {
            let b = w.as_bytes();
            (b.iter().any(u8::is_ascii_alphanumeric), b.iter().any(u8::is_ascii_alphabetic))
        } else {
            (w.chars().any(char::is_alphanumeric), w.chars().any(char::is_alphabetic))
        };
        if alnum {
            self.alnum_words += 1;
            self.alnum_chars += chars(w);
            let core = w.trim_matches(|c: char| !c.is_alphanumeric());
            self.stop_words += u64::from(STOP_WORDS.iter().any(|s| s.eq_ignore_ascii_case(core)));
        }
        self.alpha_words += u64::from(alpha);
    }
}

/// Per-row results of recent calls, keyed by the text's xxh3-128. Two generations, so that the
/// rows of the batch before the newest are still found after a turnover.
pub(crate) struct Memo<T> {
    new: HashMap<u128, T>,
    old: HashMap<u128, T>,
    /// What the newest generation holds, in the units `weigh` gives, and at most.
    weight: usize,
    limit: usize,
}

impl<T> Memo<T> {
    /// A memo whose generations turn over at `limit` units.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Memo { new: HashMap::new(), old: HashMap::new(), weight: 0, limit }
    }
}

thread_local! {
    /// Counts of the texts this thread saw last: 32,768 per generation (~4 MB).
    pub(crate) static STATS: RefCell<Memo<TextStats>> = RefCell::new(Memo::with_limit(1 << 15));
    /// `c4_clean` outputs of the texts this thread saw last, weighed in KiB: 4 MiB per generation
    /// (a few of the 1,024-row batches a plan without a model reads).
    pub(crate) static CLEANED: RefCell<Memo<Option<String>>> = RefCell::new(Memo::with_limit(4096));
}

/// Calls `out` with each row's value, `None` for a NULL text: a value this thread computed for
/// the same text recently, or `compute(text)`. The memo keeps two generations of at most its
/// limit in units, a unit being what `weigh` says a value costs (1 per entry, or its KiB).
pub(crate) fn memoized<T>(
    memo: &'static LocalKey<RefCell<Memo<T>>>,
    texts: &StringArray,
    compute: impl Fn(&str) -> T,
    weigh: impl Fn(&T) -> usize,
    mut out: impl FnMut(Option<&T>),
) {
    memo.with_borrow_mut(|m| {
        for i in 0..texts.len() {
            if texts.is_null(i) {
                out(None);
                continue;
            }
            let text = texts.value(i);
            let key = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
            if let Some(v) = m.new.get(&key) {
                out(Some(v));
                continue;
            }
            let v = match m.old.remove(&key) {
                Some(v) => v,
                None => compute(text),
            };
            if m.weight >= m.limit {
                m.old = std::mem::take(&mut m.new);
                m.weight = 0;
            }
            m.weight += weigh(&v);
            out(Some(m.new.entry(key).or_insert(v)));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_gives_what_compute_gives_and_computes_each_text_once() {
        const LIMIT: usize = 1000;
        thread_local! { static M: RefCell<Memo<u64>> = RefCell::new(Memo::with_limit(LIMIT)); }
        let calls = std::cell::Cell::new(0);
        let compute = |t: &str| {
            calls.set(calls.get() + 1);
            t.len() as u64
        };
        let a = StringArray::from(vec![Some("one"), None, Some("three"), Some("one")]);
        let mut got = vec![];
        memoized(&M, &a, compute, |_| 1, |v| got.push(v.copied()));
        assert_eq!(got, [Some(3), None, Some(5), Some(3)]);
        assert_eq!(calls.get(), 2, "the repeated text is looked up");
        // Another array with the same texts (as after a filter) is served from the memo.
        let b = StringArray::from(vec![Some("three"), Some("four")]);
        got.clear();
        memoized(&M, &b, compute, |_| 1, |v| got.push(v.copied()));
        assert_eq!(got, [Some(5), Some(4)]);
        assert_eq!(calls.get(), 3);
        // Past two generations the oldest texts are computed again, and still right.
        let many: Vec<String> = (0..2 * LIMIT + 5).map(|i| format!("text {i}")).collect();
        memoized(&M, &StringArray::from(many.clone()), compute, |_| 1, |_| {});
        M.with_borrow(|m| assert!(m.new.len() + m.old.len() <= 2 * LIMIT + 1));
        calls.set(0);
        memoized(&M, &StringArray::from(vec!["one"]), compute, |_| 1, |v| assert_eq!(v, Some(&3)));
        assert_eq!(calls.get(), 1, "evicted");
    }
}
