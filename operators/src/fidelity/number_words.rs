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
    let w = word.to_ascii_lowercase();
    match WORDS.iter().position(|u| *u == w)? {
        i @ 0..18 => Some(Part::Unit(i as u64 + 2)),
        i @ 18..26 => Some(Part::Tens(10 * (i as u64 - 16))),
        26 => Some(Part::Times(12)),
        27 => Some(Part::Times(100)),
        _ => Some(Part::Times(1000)),
    }
}

/// A number written in words: the words as written (at `start..end` of the text read), its
/// value, and its last word, which decides what may still join it.
#[derive(Clone, Debug, PartialEq)]
pub struct WordNumber {
    pub raw: String,
    pub value: u64,
    pub start: usize,
    pub end: usize,
    last: Part,
}

impl WordNumber {
    /// Whether `rest`, the text right after this number, may still grow into more of it: it is
    /// empty, or begins one of the joins the reader takes (" hundred", "-five", " and six").
    pub fn may_extend(&self, rest: &str) -> bool {
        if rest.is_empty() {
            return true;
        }
        let rest = rest.to_ascii_lowercase();
        let and = if matches!(self.last, Part::Times(_)) { &[" ", "-", " and "][..] } else { &[" ", "-"][..] };
        WORDS.iter().filter(|w| part(w).is_some_and(|p| joins(self.last, p))).any(|w| {
            and.iter().any(|sep| {
                let joined = format!("{sep}{w}");
                joined.starts_with(&rest) && joined.len() > rest.len()
            })
        })
    }

    /// Whether words still to come may make this number `figure`: the words read so far are its
    /// leading words, scaled or not ("five" of 502 or 5,000; "twenty" of 25; "two hundred" of
    /// 250 or 200,000). A loose test: it only keeps the guard from starting figures that can
    /// never become a source's; whether a finished figure is one is decided on its value.
    pub fn may_become(&self, figure: u64) -> bool {
        let v = self.value;
        match self.last {
            Part::Times(m) => [1, 1000].iter().any(|&k| (v..v + m).contains(&(figure / k))),
            // "two dozen" is 24 exactly; "five hundred", "five thousand" may go on ("and two").
            last => [1, 12, 100, 1000].iter().any(|&k| {
                let q = figure / k;
                let exact = k != 12 || figure.is_multiple_of(12);
                exact && (q == v || (matches!(last, Part::Tens(_)) && q > v && q < v + 10))
            }),
        }
    }
}

/// Every number word, for [`WordNumber::may_extend`].
const WORDS: [&str; 29] = [
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
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "dozen",
    "hundred",
    "thousand",
];

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
/// use wrapflow_operators::fidelity::number_words::word_numbers;
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
        out.push(WordNumber {
            raw: text[first.start()..end].to_string(),
            value: evaluate(&parts),
            start: first.start(),
            end,
            last,
        });
    }
    out
}

/// The value of a run of number words.
fn evaluate(parts: &[Part]) -> u64 {
    let (mut total, mut current) = (0u64, 0u64);
    for p in parts {
        match *p {
            Part::Unit(v) | Part::Tens(v) => current += v,
            Part::Times(m) => {
                if m >= 1000 {
                    total = (total + current.max(1)) * m;
                    current = 0;
                } else {
                    current = current.max(1) * m;
                }
            }
        }
    }
    total + current
}

/// What a word is as a figure when it stands alone (`Some((value, tens))` for "six", " Twenty"),
/// leading space and case aside; `None` for anything else, multipliers included.
pub fn token_number(token: &str) -> Option<(u64, bool)> {
    match part(token.trim_start())? {
        Part::Unit(v) => Some((v, false)),
        Part::Tens(v) => Some((v, true)),
        Part::Times(_) => None,
    }
}

/// Whether `text` is the beginning of a number word or of the `and` that joins them ("hun",
/// "Thousand"): what may still grow a number in words after a space.
pub fn begins_number_word(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    WORDS.iter().chain(&["and"]).any(|w| w.starts_with(&t))
}

/// Whether a token is one number word, multipliers included (" six", "hundred"): the tokens
/// that can start or grow a number in words.
pub fn is_number_word(token: &str) -> bool {
    part(token.trim_start()).is_some()
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
        // Not figures: "one", plurals, ordinals, words that merely contain a number word.
        assert!(values("one of the hundreds of often sixth attendees, no one").is_empty());
        // Two figures side by side stay two.
        assert_eq!(values("six seven"), vec![("six".into(), 6), ("seven".into(), 7)]);
    }

    #[test]
    fn a_number_may_become_the_figures_its_words_begin() {
        let first = |t: &str| word_numbers(t).remove(0);
        assert!(first("six").may_become(6) && first("five").may_become(500) && first("five").may_become(5000));
        assert!(first("five").may_become(502) && first("twenty").may_become(25) && first("twenty").may_become(25_000));
        assert!(!first("twenty").may_become(31) && !first("six").may_become(7) && !first("two").may_become(50));
        assert!(first("two").may_become(24) && !first("two").may_become(25), "two dozen, and nothing after");
        assert!(first("two hundred").may_become(200) && first("two hundred").may_become(250));
        assert!(first("two hundred").may_become(200_000) && !first("two hundred").may_become(2));
        assert!(!first("two hundred").may_become(300) && !first("twenty-five").may_become(26));
    }

    #[test]
    fn a_number_is_open_while_what_follows_may_still_join_it() {
        let first = |t: &str| word_numbers(t).remove(0);
        assert!(first("twenty").may_extend("") && first("twenty").may_extend("-") && first("twenty").may_extend(" fi"));
        assert!(first("two hundred").may_extend(" and") && first("two hundred").may_extend(" and s"));
        assert!(!first("twenty").may_extend(" and") && !first("twenty").may_extend(" years"));
        assert!(
            first("six").may_extend("-")
                && !first("six").may_extend("-y")
                && !first("six").may_extend(".")
                && first("six").may_extend(" Thou")
        );
        assert_eq!(token_number(" Six"), Some((6, false)));
        assert_eq!(token_number(" twenty"), Some((20, true)));
        assert_eq!(token_number(" sixth"), None);
        assert_eq!(token_number(" hundred"), None);
        assert!(is_number_word(" hundred") && is_number_word("Six") && !is_number_word(" sixth"));
        assert!(begins_number_word("hun") && begins_number_word("An") && !begins_number_word("years"));
    }
}
