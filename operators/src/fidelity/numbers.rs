//! Which figures a rewrite may state: those of its source, in digits or in words. The number
//! gate reads a whole rewrite with [`invented_numbers`]; the number guard asks [`Figures`] of
//! each number the model starts, and of each number in words with [`word_numbers_keep_to`], so a
//! figure the guard lets the model finish is one the gate accepts.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use super::number_words::{WordNumber, word_numbers};

/// A number as the gates read it (Unicode digits, as Rust's `\d`).
pub static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)*").unwrap());
/// Labels after which a number counts items ("Question 2:", "Step 3"): not a fact.
pub const COUNTER_LABELS: &str = "q|a|question|answer|fact|step";
/// Counting at a line start ("Question 2", "3. "): what the gate leaves out before it reads
/// numbers.
static ENUMERATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?im)^(\s*\**\s*({COUNTER_LABELS})\s*)\d+|^(\s*)\d+[.)]\s")).unwrap());
/// A figure in digits followed by a scale ("2k", "3 thousand"): the source's way of writing
/// "two thousand".
static SCALED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?i)(\d+)\s?(k|dozen|hundred|thousand)\b").unwrap());

/// The numbers of `text`: normalized form (thousands separators removed, so "2,000" and "2000"
/// are one number) → the form as written.
pub fn number_forms(text: &str) -> HashMap<String, String> {
    NUMBER
        .find_iter(text)
        .map(|m| {
            let raw = m.as_str().trim_end_matches(['.', ',']).to_string();
            (normalize(&raw), raw)
        })
        .collect()
}

/// A number's normalized form: without thousands separators.
pub fn normalize(raw: &str) -> String {
    if raw.contains(',') && !raw.contains('.') { raw.replace(',', "") } else { raw.to_string() }
}

/// The figures a source states: its numbers in digits (normalized), its numbers in words (as
/// values), and a scaled figure's value ("2k" states 2000).
#[derive(Clone, Debug, Default)]
pub struct Figures {
    forms: HashSet<String>,
    values: Vec<u64>,
}

impl Figures {
    pub fn of(source: &str) -> Self {
        let mut forms: HashSet<String> = number_forms(source).into_keys().collect();
        forms.extend(word_numbers(source).into_iter().map(|n| n.value.to_string()));
        for c in SCALED.captures_iter(source) {
            let scale = match c[2].to_ascii_lowercase().as_str() {
                "dozen" => 12,
                "hundred" => 100,
                _ => 1000,
            };
            if let Ok(v) = c[1].parse::<u64>() {
                forms.insert((v * scale).to_string());
            }
        }
        let values = forms.iter().filter_map(|f| f.parse().ok()).collect();
        Figures { forms, values }
    }

    /// Whether the source states a number (normalized, as [`number_forms`] gives it).
    pub fn states(&self, normalized: &str) -> bool {
        self.forms.contains(normalized)
    }

    /// The normalized forms, for the guard's prefix test.
    pub fn forms(&self) -> impl Iterator<Item = &String> {
        self.forms.iter()
    }

    /// Whether a number in words may still become one of the source's figures
    /// ([`WordNumber::may_become`]).
    pub fn may_become(&self, n: &WordNumber) -> bool {
        self.values.iter().any(|&v| n.may_become(v))
    }

    /// Whether a number in words is, as written, one of the source's figures.
    pub fn states_words(&self, n: &WordNumber) -> bool {
        self.states(&n.value.to_string())
    }
}

/// Whether the numbers in words of `text` from byte `from` on keep to `figures`: each one that
/// is finished (the text goes on with something that cannot join it, or `end` says it ends) is
/// a source figure; one still open may become one. The guard's test and the gate's rule in one.
pub fn word_numbers_keep_to(figures: &Figures, text: &str, from: usize, end: bool) -> bool {
    word_numbers(text).iter().filter(|n| n.end > from).all(|n| {
        let open = !end && n.may_extend(&text[n.end..]);
        if open { figures.may_become(n) } else { figures.states_words(n) }
    })
}

/// Numbers of `output` that `source` does not contain, in digits or in words ("six" and "6"
/// are one number; see [`word_numbers`]); counting at a line start is not read.
pub fn invented_numbers(source: &str, output: &str) -> Vec<String> {
    let figures = Figures::of(source);
    let output = ENUMERATION.replace_all(output, "${1}${3} ");
    let in_words = word_numbers(&output).into_iter().filter(|n| !figures.states_words(n));
    let mut out: Vec<String> = number_forms(&output)
        .into_iter()
        .filter(|(n, _)| !figures.states(n))
        .map(|(_, raw)| raw)
        .chain(in_words.map(|n| n.raw))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_forms_normalize_separators() {
        let f = number_forms("2,000 and 3.5, then 2004.");
        assert_eq!(f.get("2000").map(String::as_str), Some("2,000"));
        assert_eq!(f.get("3.5").map(String::as_str), Some("3.5"));
        assert!(f.contains_key("2004"));
    }

    #[test]
    fn a_number_in_words_is_a_source_figure_only_at_its_own_value() {
        assert_eq!(invented_numbers("It cost 2 dollars.", "It cost two hundred dollars."), vec!["two hundred"]);
        assert!(invented_numbers("It cost 200 dollars.", "It cost two hundred dollars.").is_empty());
        assert!(invented_numbers("It cost 2k dollars.", "It cost two thousand dollars.").is_empty());
        assert!(invented_numbers("A dozen eggs, twenty-five hens.", "12 eggs and 25 hens.").is_empty());
        assert_eq!(invented_numbers("3.5 and 1,200", "1200, 3.5 and 7."), vec!["7".to_string()]);
    }

    #[test]
    fn a_number_in_words_is_held_to_the_figures_while_open_and_when_finished() {
        let f = Figures::of("Some 25 actors and 300 seats.");
        for (text, end, ok) in [
            ("with twenty", false, true),
            ("with twenty-", false, true),
            ("with twenty years", false, false),
            ("with twenty", true, false),
            ("with twenty-five years", false, true),
            ("with three", false, true),
            ("with three hundred.", false, true),
            ("with three people", false, false),
            ("with two hundred", false, false),
        ] {
            assert_eq!(word_numbers_keep_to(&f, text, 0, end), ok, "{text:?} end={end}");
        }
        assert!(word_numbers_keep_to(&f, "six years and twenty", 10, false), "earlier numbers are settled");
    }
}
