//! Grounding: whether each claim of a rewrite is built from its source. A claim is a sentence (a
//! Question with its Answer in a Q&A); like the sentence-level checkers SummaC, AlignScore and
//! MiniCheck, each claim is aligned with its best source evidence (one sentence, or two that
//! follow each other), here by shared word stems rather than a trained model:
//!
//! - **coverage**: the share of the claim's content words that its best evidence holds; a claim
//!   with detail of its own (a place, a cause, an example) finds no evidence that covers it;
//! - **unknown words**: words that are neither the source's (any inflection) nor English (the
//!   SCOWL word list, `operators/data`): misspelt terms and made-up words;
//! - **figures**: the words a number counts ("15-foot *board*") must stand in a source sentence
//!   that has the same number;
//! - **names**: most words around a name (its verb, its object) must stand in a source sentence
//!   with that name;
//! - **anchors**: the names and numbers of one claim must meet in one source sentence (two
//!   names from different source sentences joined in one claim swap their roles);
//! - **polarity**: a claim and its best source sentence both negate, or neither does.
//!
//! ```
//! use wrapflow_operators::stages::gates::grounding;
//! let src = "The pole vault uses a 15-foot approach. The bar is not raised until each athlete has jumped.";
//! let g = grounding(src, "A vaulter jumps from a 15-foot board. The bar is raised before each jump.", false);
//! assert_eq!(g.unbound_figures, vec!["15 (board)".to_string()]);
//! assert_eq!(g.flipped_polarity.len(), 1);
//! assert!(grounding(src, "The bar is not raised before every athlete has jumped.", false).flipped_polarity.is_empty());
//! ```

use std::collections::HashSet;
use std::io::Read;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::fidelity::number_words::token_number;
use crate::fidelity::sentences::{label_end, sentences};
use crate::fidelity::words::{FUNCTION_WORDS, content_stem};
use crate::stages::gates::GateConfig;

mod bind;
use bind::{flipped, unbound};

/// Lower-case English words (SCOWL size 50, American and British; see `scripts/wordlist.sh`).
static LEXICON: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut text = String::new();
    flate2::read::GzDecoder::new(&include_bytes!("../../../../data/english-words.txt.gz")[..])
        .read_to_string(&mut text)
        .expect("the embedded word list is gzip of UTF-8");
    text.lines().map(str::to_string).collect()
});

/// Words that negate what their clause says.
const NEGATORS: [&str; 11] =
    ["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "hardly"];

/// Ordinal words, read as the figure they are ("first" is 1 when it counts: the guard and the
/// number gate leave ordinals alone, this check binds them).
const ORDINALS: [&str; 12] = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth",
];

/// What the grounding checks measured on one rewrite.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Grounding {
    /// The least, over claims with at least [`MIN_CLAIM_WORDS`] content words, of the share of
    /// the claim's content words that its best evidence holds (1 when no claim is that long).
    pub coverage: f64,
    /// The claim with that least coverage, and its words that the evidence lacks.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weakest_claim: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weakest_missing: Vec<String>,
    /// Content words of the rewrite that no source word shares a stem with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub novel_words: Vec<String>,
    /// Words that are neither the source's nor English.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_words: Vec<String>,
    /// Numbers whose neighbours no source sentence with that number has: "15 (board)".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound_figures: Vec<String>,
    /// Names whose neighbours (their verb, their object) no source sentence with that name has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound_names: Vec<String>,
    /// Claims whose names and numbers meet in no piece of evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scattered_anchors: Vec<String>,
    /// Claims that negate where their evidence does not, or the other way round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flipped_polarity: Vec<String>,
}

/// Claims shorter than this (in content words) are not scored for coverage: "Yes, it did."
pub const MIN_CLAIM_WORDS: usize = 3;

/// One word of a text, as the checks read it.
#[derive(Clone, Debug)]
struct Word {
    /// Lower case, without a possessive ending.
    lower: String,
    stem: String,
    /// A number's value ("2000" for "2,000", "20" for "20th" and "twentieth"), if it is one.
    figure: Option<String>,
    /// Capitalised not at the start of its sentence, or an acronym.
    name: bool,
    /// Where a clause ends after this word (`,` `;` `:` or the sentence's end).
    clause_end: bool,
}

impl Word {
    fn content(&self) -> bool {
        !FUNCTION_WORDS.contains(&self.lower.as_str())
    }
}

fn figure(lower: &str) -> Option<String> {
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.') {
        let suffix = &lower[digits.len()..];
        if matches!(suffix, "" | "st" | "nd" | "rd" | "th" | "s" | "m" | "bn" | "km" | "kg" | "ft") {
            let d = digits.trim_end_matches(['.', ',']);
            return Some(if d.contains('.') { d.to_string() } else { d.replace(',', "") });
        }
    }
    if let Some(i) = ORDINALS.iter().position(|o| *o == lower) {
        return Some((i + 1).to_string());
    }
    token_number(lower).map(|(v, _)| v.to_string())
}

/// The words of one claim, in order.
fn words(claim: &str) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::new();
    let mut first = true;
    let mut start = 0;
    let bytes: Vec<(usize, char)> = claim.char_indices().chain([(claim.len(), ' ')]).collect();
    for &(i, c) in &bytes {
        let part_of_word = c.is_alphanumeric() || ((c == '\'' || c == '’' || c == ',' || c == '.') && i > start);
        // A comma or stop inside a figure ("2,000", "3.5") belongs to it.
        let inside_figure = (c == ',' || c == '.')
            && claim[start..i].chars().all(|d| d.is_ascii_digit())
            && claim[i + 1..].starts_with(|d: char| d.is_ascii_digit());
        if part_of_word && (c.is_alphanumeric() || c == '\'' || c == '’' || inside_figure) {
            continue;
        }
        if i > start {
            let raw = claim[start..i].trim_matches(['\'', '’']);
            let raw = raw.split(['\'', '’']).next().unwrap_or(raw);
            if !raw.is_empty() {
                let lower = raw.to_lowercase();
                let capital = raw.chars().next().is_some_and(char::is_uppercase);
                let acronym = raw.chars().filter(|c| c.is_uppercase()).count() >= 2;
                out.push(Word {
                    stem: content_stem(&lower),
                    figure: figure(&lower),
                    name: acronym || (capital && !first),
                    clause_end: false,
                    lower,
                });
                first = false;
            }
        }
        if matches!(c, ',' | ';' | ':' | '(' | ')' | '—' | '–')
            && let Some(w) = out.last_mut()
        {
            w.clause_end = true;
        }
        start = i + c.len_utf8();
    }
    if let Some(w) = out.last_mut() {
        w.clause_end = true;
    }
    out
}

/// Claims of a rewrite: its sentences, or in a Q&A each question with its answer (labels
/// dropped), so that "Who found it?" / "Krebs." is one claim.
pub fn claims(text: &str, qa: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open_question = false;
    for s in sentences(text) {
        // The Q&A label, as the other gates read it ([`label_end`]).
        let (label, body) = match label_end(s) {
            Some(e) => (Some(&s[..e]), s[e..].trim()),
            None => (None, s),
        };
        let body = body.trim_matches(['*', ' ']);
        let answer = label.is_some_and(|l| l.trim_matches(['*', ' ']).to_lowercase().starts_with('a'));
        match out.last_mut() {
            Some(last) if qa && (answer || (open_question && label.is_none())) => {
                last.push(' ');
                last.push_str(body);
            }
            _ => out.push(body.to_string()),
        }
        open_question = qa && body.ends_with('?');
    }
    out.retain(|c| c.chars().any(char::is_alphanumeric));
    out
}

/// A source sentence as evidence: its content stems, figures and names (stems), and polarity.
struct Evidence {
    stems: HashSet<String>,
    figures: HashSet<String>,
    negated: bool,
}

impl Evidence {
    fn of(words: &[Word]) -> Self {
        Evidence {
            stems: words.iter().map(|w| w.stem.clone()).collect(),
            figures: words.iter().filter_map(|w| w.figure.clone()).collect(),
            negated: words.iter().any(negates),
        }
    }

    fn union(a: &Evidence, b: &Evidence) -> Self {
        Evidence {
            stems: a.stems.union(&b.stems).cloned().collect(),
            figures: a.figures.union(&b.figures).cloned().collect(),
            negated: a.negated || b.negated,
        }
    }

    fn holds(&self, w: &Word) -> bool {
        self.stems.contains(&w.stem) || w.figure.as_ref().is_some_and(|f| self.figures.contains(f))
    }
}

fn negates(w: &Word) -> bool {
    NEGATORS.contains(&w.lower.as_str()) || w.lower.ends_with("n't")
}

/// Whether a word is English or the source's: a share of the source's stems, or in the word
/// list (words with a digit or other non-letters, and words under 3 letters, are not judged).
fn known(w: &Word, source: &HashSet<String>) -> bool {
    let alpha = w.lower.chars().all(|c| c.is_alphabetic());
    !alpha || w.lower.chars().count() < 3 || source.contains(&w.stem) || LEXICON.contains(&w.lower)
}

/// The grounding checks on one rewrite (see the module docs); `qa` when the style writes
/// Question/Answer pairs.
pub fn grounding(source: &str, output: &str, qa: bool) -> Grounding {
    let src_sentences: Vec<Vec<Word>> = sentences(source).into_iter().map(words).collect();
    let singles: Vec<Evidence> = src_sentences.iter().map(|s| Evidence::of(s)).collect();
    let mut windows: Vec<&Evidence> = singles.iter().collect();
    let pairs: Vec<Evidence> = singles.windows(2).map(|p| Evidence::union(&p[0], &p[1])).collect();
    windows.extend(&pairs);
    let src_stems: HashSet<String> = src_sentences.iter().flatten().map(|w| w.stem.clone()).collect();
    let mut g = Grounding { coverage: 1.0, ..Default::default() };
    let mut novel = HashSet::new();
    for claim in claims(output, qa) {
        let ws = words(&claim);
        for w in &ws {
            if !known(w, &src_stems) && !w.name && !g.unknown_words.contains(&w.lower) {
                g.unknown_words.push(w.lower.clone());
            }
            if w.content() && w.figure.is_none() && !src_stems.contains(&w.stem) && novel.insert(w.stem.clone()) {
                g.novel_words.push(w.lower.clone());
            }
        }
        let content: Vec<&Word> = ws.iter().filter(|w| w.content()).collect();
        let covered = |e: &Evidence| content.iter().filter(|w| e.holds(w)).count();
        let Some(best) = windows.iter().max_by_key(|e| covered(e)) else { continue };
        if content.len() >= MIN_CLAIM_WORDS {
            let share = covered(best) as f64 / content.len() as f64;
            if share < g.coverage {
                g.coverage = share;
                g.weakest_claim = claim.clone();
                g.weakest_missing = content.iter().filter(|w| !best.holds(w)).map(|w| w.lower.clone()).collect();
            }
        }
        let anchors: Vec<&Word> = ws.iter().filter(|w| w.name || w.figure.is_some()).collect();
        // Within one sentence: two adjacent ones may each hold one of the names.
        let known_anchors: Vec<&&Word> = anchors.iter().filter(|a| singles.iter().any(|e| e.holds(a))).collect();
        if known_anchors.len() >= 2 && !singles.iter().any(|e| known_anchors.iter().all(|a| e.holds(a))) {
            g.scattered_anchors.push(claim.clone());
        }
        unbound(&ws, &src_sentences, &singles, true, &mut g.unbound_figures);
        unbound(&ws, &src_sentences, &singles, false, &mut g.unbound_names);
        if flipped(&ws, &singles) {
            g.flipped_polarity.push(claim.clone());
        }
    }
    g
}

/// The first grounding gate that `g` fails, as a reject reason.
pub(crate) fn grounding_reason(g: &Grounding, cfg: &GateConfig, on: &dyn Fn(&str) -> bool) -> Option<String> {
    let first = |v: &[String]| v.first().cloned().unwrap_or_default();
    if on("words") && g.unknown_words.len() > cfg.max_unknown_words {
        Some(format!("unknown words: {} (neither the source's nor English)", g.unknown_words.join(", ")))
    } else if on("coverage") && g.coverage < cfg.min_coverage {
        Some(format!(
            "coverage: {:.2} of \"{}\" is in its best source evidence (min {}); not there: {}",
            g.coverage,
            g.weakest_claim,
            cfg.min_coverage,
            g.weakest_missing.join(", ")
        ))
    } else if cfg.bind_figures && on("figures") && !g.unbound_figures.is_empty() {
        Some(format!("figures: {} stand beside other words in the source", g.unbound_figures.join("; ")))
    } else if cfg.bind_names && on("names") && !g.unbound_names.is_empty() {
        Some(format!("names: {} stand beside other words in the source", g.unbound_names.join("; ")))
    } else if cfg.bind_anchors && on("anchors") && !g.scattered_anchors.is_empty() {
        Some(format!("anchors: \"{}\" joins names or figures no source sentence joins", first(&g.scattered_anchors)))
    } else if cfg.polarity && on("polarity") && !g.flipped_polarity.is_empty() {
        Some(format!(
            "polarity: \"{}\" negates where its source does not, or the other way",
            first(&g.flipped_polarity)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
