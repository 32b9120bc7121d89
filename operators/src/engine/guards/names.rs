//! Name-constrained decoding: mid-sentence, a generation may only write capitalised words that
//! its source contains.
//!
//! Small models drift into names their source never mentions ("President Karzai" in a paragraph
//! about a biochemist); the entity-fidelity gate rejects such answers after the fact. A
//! [`NameGuard`] prevents them instead: before each token is picked, a token that would start or
//! extend a capitalised word that does not start its sentence, and that is no prefix of a word
//! of the source, is masked; so is a token that would end such a word when the word is not one
//! of the source's. Acronyms (two or more capitals and nothing in lower case) are held to that
//! rule everywhere; other words at a sentence start are left alone (any word may be capitalised
//! there), as are the words that are never names ([`NOT_NAMES`]). The rules are the gate's own
//! ([`crate::fidelity::names`], [`sentence_start`]): words compare by [`name_key`]; a word with a
//! capital after a lower-case letter ([`mixed_case`]) must be one of the source's as written.

use std::collections::HashSet;

use crate::fidelity::names::{NOT_NAMES, acronym, base, mixed_case, name_key, split_words, trailing_word, word_char};
use crate::fidelity::sentences::sentence_start;
use crate::fidelity::words::{FUNCTION_WORDS, content_stem};

/// The capitalised words one generation may write mid-sentence: the words of its source.
#[derive(Clone, Debug, Default)]
pub struct NameGuard {
    /// Lower-case words of the source and their stems, sorted: what a word must begin.
    prefixes: Vec<String>,
    /// Stems of the source's words: what a finished word must be.
    whole: HashSet<String>,
    /// The source's words as written, sorted: what a mixed-case word must be (or begin).
    exact: Vec<String>,
    /// The style's format words, allowed besides [`NOT_NAMES`] (e.g. a Q&A's labels).
    allowed: Vec<String>,
    /// With the vocabulary guard, what any word (not only a name) must begin: the source's
    /// words in lower case, their stems, the function words and the format words, sorted.
    vocabulary: Option<Vec<String>>,
}

impl NameGuard {
    /// The guard of a generation from `source` whose style has the format words `allow`.
    pub fn new(source: &str, allow: &[&str]) -> Self {
        let words: Vec<&str> = split_words(source).collect();
        let extra = || NOT_NAMES.iter().chain(allow);
        let mut whole: HashSet<String> = words.iter().map(|w| name_key(w)).collect();
        whole.extend(extra().map(|w| name_key(w)));
        let mut prefixes: Vec<String> = words.iter().map(|w| w.to_lowercase()).chain(whole.iter().cloned()).collect();
        prefixes.extend(extra().map(|w| w.to_lowercase()));
        prefixes.sort();
        prefixes.dedup();
        let mut exact: Vec<String> = words.iter().map(|w| base(w).to_string()).collect();
        exact.sort();
        exact.dedup();
        NameGuard { prefixes, whole, exact, allowed: allow.iter().map(|w| w.to_string()).collect(), vocabulary: None }
    }

    /// The same guard that also keeps every word the model starts to the source's words (in
    /// any inflection that shares their stem's spelling), the function words and the style's
    /// format words: a small model's invented details ("the shoelace method") are words its
    /// source lacks. A token that starts a word (a space, then letters) must begin one of them;
    /// the rest of a word is not checked.
    pub fn with_vocabulary(mut self, source: &str) -> Self {
        let mut v: Vec<String> = split_words(source)
            .flat_map(|w| {
                let lower = base(w).to_lowercase();
                [content_stem(&lower), lower]
            })
            .chain(FUNCTION_WORDS.iter().map(|w| w.to_string()))
            .chain(self.allowed.iter().map(|w| w.to_lowercase()))
            .chain(NOT_NAMES.iter().map(|w| w.to_lowercase()))
            .collect();
        v.sort();
        v.dedup();
        self.vocabulary = Some(v);
        self
    }

    /// Whether the guard keeps words to a vocabulary ([`NameGuard::with_vocabulary`]).
    pub fn guards_vocabulary(&self) -> bool {
        self.vocabulary.is_some()
    }

    /// Whether a token may be written as far as the vocabulary goes: one that starts a word
    /// (whitespace, then a letter) must begin a word of the vocabulary.
    pub fn vocabulary_allows(&self, token: &str) -> bool {
        let Some(v) = &self.vocabulary else { return true };
        let rest = token.trim_start_matches(' ');
        if rest.len() == token.len() || !rest.starts_with(char::is_alphabetic) {
            return true;
        }
        let head: String = rest.chars().take_while(|c| c.is_alphabetic()).flat_map(char::to_lowercase).collect();
        let i = v.partition_point(|w| w.as_str() < head.as_str());
        v.get(i).is_some_and(|w| w.starts_with(&head))
    }

    /// The style's format words this guard allows.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a mixed-case word (or the part written so far) is, or begins, a source word as
    /// written.
    fn exact_ok(&self, word: &str, finished: bool) -> bool {
        let w = base(word);
        let i = self.exact.partition_point(|x| x.as_str() < w);
        self.exact.get(i).is_some_and(|x| if finished { x == w } else { x.starts_with(w) })
    }

    fn is_prefix(&self, part: &str) -> bool {
        let p = part.to_lowercase();
        let i = self.prefixes.partition_point(|w| w.as_str() < p.as_str());
        self.prefixes.get(i).is_some_and(|w| w.starts_with(&p))
    }

    /// Whether `line` (the current line of the text so far) followed by `next` keeps every
    /// mid-sentence capitalised word inside the source's words.
    pub fn allows(&self, line: &str, next: &str) -> bool {
        // The word still open at the end of `line` can change; earlier ones are settled.
        let open = line.len() - trailing_word(line).len();
        let text = format!("{}{next}", &line[open..]);
        let mut at = 0;
        for word in text.split(|c: char| !word_char(c)) {
            let start = at;
            at += word.len() + text[at + word.len()..].chars().next().map_or(0, char::len_utf8);
            let finished = start + word.len() < text.len();
            // Quotes around a word are not part of it, as the gate reads words ("'Watson").
            let word = word.trim_start_matches(['\'', '’']);
            if mixed_case(word) && !self.exact_ok(word, finished) {
                return false;
            }
            let capital = word.chars().next().is_some_and(char::is_uppercase);
            if !capital || (!acronym(word) && sentence_start(&format!("{}{}", &line[..open], &text[..start]))) {
                continue;
            }
            let ok = if finished { self.whole.contains(&name_key(word)) } else { self.is_prefix(word) };
            if !ok {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fidelity::names::QA_LABELS;

    const SRC: &str = "Hans Krebs found the citric acid cycle at Sheffield. The MRC's grants paid for it.";

    #[test]
    fn source_names_and_their_prefixes_pass_mid_sentence() {
        let g = NameGuard::new(SRC, &QA_LABELS);
        for (line, next) in [("worked at ", "Shef"), ("at Shef", "field"), ("at Sheffield", "."), ("by ", "Krebs")] {
            assert!(g.allows(line, next), "{line:?} + {next:?}");
        }
        assert!(g.allows("funded by the ", "MRC"), "an acronym of the source");
        assert!(g.allows("Krebs", "'s work"), "a possessive");
        assert!(g.allows("and ", "I"), "the pronoun");
    }

    #[test]
    fn new_names_mid_sentence_are_masked_and_sentence_starts_are_free() {
        let g = NameGuard::new(SRC, &QA_LABELS);
        assert!(!g.allows("praised by ", "Watson"));
        assert!(!g.allows("praised by ", " Wat"), "no source word starts with wat");
        assert!(!g.allows("praised by Sh", "o"), "Sho is no prefix of a source word");
        assert!(!g.allows("at Shef", " "), "Shef is not a word of the source");
        assert!(g.allows("It worked. ", "Watson"), "a sentence start");
        assert!(!g.allows("It worked.", "Watson"), "no space after the stop: the gate reads one sentence");
        assert!(g.allows("", "Watson"), "a line start");
        assert!(g.allows("Answer: ", "Watson"), "after a label");
        assert!(g.allows("praised by ", "watson"), "lower case is not a name");
        assert!(!g.allows("He met Mr. ", "Watson"), "no sentence starts after an abbreviation");
        assert!(!g.allows("by J. ", "Watson"), "nor after an initial");
    }

    #[test]
    fn a_name_that_only_shares_a_stem_is_not_the_sources() {
        let g = NameGuard::new("The poems of Ted Hughes.", &[]);
        assert!(g.allows("by Ted ", "Hugh"), "the start of Hughes");
        assert!(!g.allows("by Ted Hugh", " "), "Hugh is not Hughes");
        assert!(g.allows("by Ted Hughes", "'s ") && g.allows("by Ted Hughes", " "));
    }

    #[test]
    fn acronyms_are_names_at_sentence_starts_too() {
        let g = NameGuard::new(SRC, &QA_LABELS);
        assert!(!g.allows("It worked. ", "DNA"), "an acronym the source lacks");
        assert!(!g.allows("", "DN"), "no source word starts with dn");
        assert!(!g.allows("It worked. D", "NA"), "the word becomes an acronym");
        assert!(g.allows("It worked. ", "MRC"), "the source's acronym");
        assert!(g.allows("It worked. ", "Dna"), "a capitalised word at a sentence start");
        assert!(g.allows("", "OK"), "never a name");
    }

    #[test]
    fn format_words_are_names_outside_their_style() {
        let (qa, plain) = (NameGuard::new(SRC, &QA_LABELS), NameGuard::new(SRC, &[]));
        assert!(qa.allows("the Goat or ", "Answer") && qa.allows("the Goat or ", "Ans"), "a Q&A's own word");
        assert!(
            !plain.allows("the Goat or ", "Answer") && !plain.allows("the Goat or ", "Ans"),
            "invented in a rewrite"
        );
        assert!(plain.allows("Answer: ", "Krebs") && plain.allows("and ", "I"), "labels and the pronoun still pass");
        assert_eq!(qa.allowed(), QA_LABELS);
    }

    #[test]
    fn the_vocabulary_guard_keeps_word_starts_to_the_source_and_function_words() {
        let g = NameGuard::new(SRC, &QA_LABELS);
        assert!(g.vocabulary_allows(" shoelace") && !g.guards_vocabulary(), "off unless asked for");
        let g = g.with_vocabulary(SRC);
        assert!(g.guards_vocabulary());
        for ok in [
            " cycle",
            " cyc",
            " Sheffield",
            " found",
            " grant",
            " the",
            " because",
            " Answer",
            " grants",
            "lace",
            ".",
            " 1937",
        ] {
            assert!(g.vocabulary_allows(ok), "{ok:?}");
        }
        for no in [" shoelace", " ball", " method", " Watson", " finding"] {
            assert!(!g.vocabulary_allows(no), "{no:?}");
        }
    }

    #[test]
    fn a_mixed_case_word_must_be_written_as_the_source_writes_it() {
        let g = NameGuard::new("The origins of Christianity, said the McDonald's manager.", &[]);
        assert!(!g.allows("of ", "ChristiAn"), "odd capitals");
        assert!(!g.allows("The ", "christiAn"), "odd capitals in a lower-case word");
        assert!(!g.allows("Christi", "An"), "at a sentence start too");
        assert!(g.allows("by the ", "McDon"), "a prefix of the source's own casing");
        assert!(g.allows("by the McDonald", "'s staff"), "and the whole word with a possessive");
        assert!(!g.allows("by the ", "MacDonald"), "not the source's casing");
        assert!(g.allows("of ", "Christianity"));
    }
}
