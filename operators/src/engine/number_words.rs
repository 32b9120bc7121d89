//! Numbers written as words ("six months", "twenty-five", "two hundred"): the number gate and
//! guard read them as the figures they are, so "banned for six months" is an invented number
//! when the source gives no duration, and "6" and "six" are one number.
//!
//! Read: two to nineteen, the tens, `dozen`, `hundred` and `thousand`, joined into one figure
//! when written together ("twenty-five", "two hundred and five"). Not read: "one" (mostly a
//! pronoun: "one of the", "no one"), plurals ("hundreds of": no figure), ordinals, fractions,
//! and "million"/"billion", which scale the figure before them as "m"/"bn" after digits do
//! ("seven million" is the source's "7m").

use std::sync::LazyLock;

use regex::Regex;

static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z]+").unwrap());

/// What a number word is: a figure that adds (two, fourteen, forty) or a multiplier.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Part {
    Unit(u64),
    Tens(u64),
    Times(u64),
}

fn part(word: &str) -> Option<Part> {
    const UNITS: [&str; 18] = [
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    let w = word.to_ascii_lowercase();
    if let Some(i) = UNITS.iter().position(|u| *u == w) {
        return Some(Part::Unit(i as u64 + 2));
    }
    if let Some(i) = TENS.iter().position(|t| *t == w) {
        return Some(Part::Tens(10 * (i as u64 + 2)));
    }
    match w.as_str() {
        "dozen" => Some(Part::Times(12)),
        "hundred" => Some(Part::Times(100)),
        "thousand" => Some(Part::Times(1000)),
        _ => None,
    }
}

/// A number written in words: the words as written, its value, and the value of the words
/// before its last multiplier ("two" of "two thousand"), which a source may give as "2k".
#[derive(Clone, Debug, PartialEq)]
pub struct WordNumber {
    pub raw: String,
    pub value: u64,
    pub coefficient: Option<u64>,
}

/// Whether `next` may join the figure whose last word was `prev`: a unit after a tens word
/// ("twenty-five"), a multiplier after anything, anything smaller after a multiplier.
fn joins(prev: Part, next: Part) -> bool {
    match (prev, next) {
        (Part::Tens(_), Part::Unit(u)) => u < 10,
        (_, Part::Times(_)) => true,
        (Part::Times(_), _) => true,
        _ => false,
    }
}

/// The numbers written in words in `text`.
///
/// ```
/// use wrapflow_operators::engine::number_words::word_numbers;
///
/// let found = word_numbers("One of twenty-five actors was banned for six months.");
/// let read: Vec<(&str, u64)> = found.iter().map(|n| (n.raw.as_str(), n.value)).collect();
/// assert_eq!(read, [("twenty-five", 25), ("six", 6)]);
/// ```
pub fn word_numbers(text: &str) -> Vec<WordNumber> {
    let words: Vec<_> = WORD.find_iter(text).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let first = words[i];
        i += 1;
        let Some(mut last) = part(first.as_str()) else { continue };
        let (mut parts, mut end) = (vec![last], first.end());
        loop {
            // "two hundred and five": `and` joins only after a multiplier.
            let and = matches!(last, Part::Times(_))
                && words.get(i).is_some_and(|w| w.as_str().eq_ignore_ascii_case("and") && &text[end..w.start()] == " ");
            let Some(next) = words.get(i + usize::from(and)) else { break };
            let gap = &text[if and { words[i].end() } else { end }..next.start()];
            let Some(p) = part(next.as_str()).filter(|&p| (gap == " " || gap == "-") && joins(last, p)) else { break };
            parts.push(p);
            (last, end) = (p, next.end());
            i += 1 + usize::from(and);
        }
        let (value, coefficient) = evaluate(&parts);
        out.push(WordNumber { raw: text[first.start()..end].to_string(), value, coefficient });
    }
    out
}

/// The value of a run of number words, and the value before its last multiplier.
fn evaluate(parts: &[Part]) -> (u64, Option<u64>) {
    let (mut total, mut current, mut coefficient) = (0u64, 0u64, None);
    for p in parts {
        match *p {
            Part::Unit(v) | Part::Tens(v) => current += v,
            Part::Times(m) => {
                coefficient = Some(current.max(1));
                if m >= 1000 {
                    total = (total + current.max(1)) * m;
                    current = 0;
                } else {
                    current = current.max(1) * m;
                }
            }
        }
    }
    (total + current, coefficient)
}

/// What a single token's word is as a number, for the guard: `Some((value, tens))` when the
/// token, leading space and case aside, is one number word that adds to a figure. Multipliers
/// are left to the gate: "hundred" alone says little before the words ahead of it are known.
pub fn token_number(token: &str) -> Option<(u64, bool)> {
    let t = token.trim_start();
    if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    match part(t)? {
        Part::Unit(v) => Some((v, false)),
        Part::Tens(v) => Some((v, true)),
        Part::Times(_) => None,
    }
}

/// Whether a number word of value `v` may begin a figure a source with `values` states: the
/// same value, or scaled ("five" of "500", "5,000" or "5m"), and for a tens word any figure it
/// may still become ("twenty" of "25").
pub fn fits(values: &[u64], v: u64, tens: bool) -> bool {
    values.iter().any(|&s| {
        [1, 100, 1000, 1_000_000].iter().any(|&m| {
            s % m == 0 && {
                let q = s / m;
                q == v || (tens && q > v && q < v + 10)
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<(String, u64)> {
        word_numbers(text).into_iter().map(|n| (n.raw, n.value)).collect()
    }

    #[test]
    fn number_words_read_as_figures() {
        assert_eq!(values("banned for six months"), vec![("six".into(), 6)]);
        assert_eq!(
            values("Twenty-five of the two hundred and five seats"),
            vec![("Twenty-five".into(), 25), ("two hundred and five".into(), 205)]
        );
        assert_eq!(values("three thousand four hundred"), vec![("three thousand four hundred".into(), 3400)]);
        assert_eq!(values("a dozen eggs, two dozen more"), vec![("dozen".into(), 12), ("two dozen".into(), 24)]);
        assert_eq!(word_numbers("two thousand")[0].coefficient, Some(2));
        // Not figures: "one", plurals, ordinals, words that merely contain a number word.
        assert!(values("one of the hundreds of often sixth attendees, no one").is_empty());
        // Two figures side by side stay two.
        assert_eq!(values("six seven"), vec![("six".into(), 6), ("seven".into(), 7)]);
    }

    #[test]
    fn a_word_fits_the_figures_it_may_begin() {
        assert!(fits(&[6], 6, false));
        assert!(fits(&[500], 5, false) && fits(&[5000], 5, false) && fits(&[25], 20, true));
        assert!(!fits(&[25], 20, false) && !fits(&[7], 6, false) && !fits(&[], 2, false));
        assert_eq!(token_number(" Six"), Some((6, false)));
        assert_eq!(token_number(" twenty"), Some((20, true)));
        assert_eq!(token_number(" sixth"), None);
        assert_eq!(token_number(" hundred"), None);
    }
}
