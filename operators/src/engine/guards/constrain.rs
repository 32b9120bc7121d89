//! Number-constrained decoding: a generation may only write numbers that its source contains.
//!
//! Small models copy a chunk and then run on, inventing figures ("$1.09bn" where the source says
//! "$639m", years such as 2020); the number-fidelity gate rejects such answers after the fact.
//! A [`NumberGuard`] prevents them instead: before each token is picked, a token that would
//! start or extend a number that is no prefix of a source number, or end a number that is not
//! one, is masked. The model then takes its best allowed token (a source number, or words).
//! The rules are the gate's own ([`crate::fidelity::numbers`]): a number is a run of digits with `.` or `,`
//! between digits, and thousands separators do not count ("2,000" is "2000"); counting at a
//! line start ("Question 2:", "3. ") is not a fact and is left alone. Numbers written in words
//! ("six", "twenty-five", "two hundred") are figures too ([`crate::fidelity::number_words`]): a
//! number word is masked when the figure it starts or grows can become no source figure, and
//! any token that would finish a figure in words that is none of the source's.
//!
//! The guard keeps numbers inside the source's set; it cannot tell whether a copied number is
//! attached to the right fact. The meaning gate still judges the whole answer, and each answer
//! records how often the guard overrode the model's first choice.

use std::sync::LazyLock;

use regex::Regex;
use tokenizers::Tokenizer;

use crate::engine::guards::names::NameGuard;
use crate::fidelity::names::{acronym, mixed_case, trailing_word, word_char};
use crate::fidelity::number_words::{begins_number_word, is_number_word, word_numbers};
use crate::fidelity::numbers::{COUNTER_LABELS, Figures, NUMBER, normalize, number_forms, word_numbers_keep_to};
use crate::fidelity::sentences::sentence_start;

static DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d").unwrap());
/// What may precede a counter on its line: nothing, or a label.
static COUNTER_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)^\s*\**\s*(({COUNTER_LABELS})\s*)?$")).unwrap());

/// The numbers one generation may write: those of its source.
#[derive(Clone, Debug, Default)]
pub struct NumberGuard {
    /// The source's figures: what a finished number must be.
    figures: Figures,
    /// Written and normalized forms: what an unfinished number must begin.
    prefixes: Vec<String>,
}

impl NumberGuard {
    pub fn new(source: &str) -> Self {
        let figures = Figures::of(source);
        // A figure the source writes in words or with a scale may be written in digits ("six"
        // lets "6" pass).
        let mut prefixes: Vec<String> = figures.forms().cloned().chain(number_forms(source).into_values()).collect();
        prefixes.sort();
        prefixes.dedup();
        NumberGuard { figures, prefixes }
    }

    /// Where the last number in words of `line` starts, when it is still open (what follows it
    /// may join it).
    fn open_word_number(&self, line: &str) -> Option<usize> {
        word_numbers(line).last().filter(|n| n.may_extend(&line[n.end..])).map(|n| n.start)
    }

    /// Whether token `next` after `line` keeps the numbers in words inside the source's
    /// figures, as the gate reads them ([`word_numbers_keep_to`]): a number still open must be
    /// able to become one, a finished one must be one; with `end`, the text ends after `next`.
    pub fn allows_word(&self, line: &str, next: &str, end: bool) -> bool {
        self.words_after(line).allows(next, end)
    }

    /// What [`NumberGuard::allows_word`] needs of `line`, read once for every token checked.
    fn words_after<'a>(&'a self, line: &'a str) -> WordCheck<'a> {
        // Only the open number and what the next token writes can change; earlier numbers are
        // settled.
        let from = self.open_word_number(line).unwrap_or(line.len());
        let start = line[..from].trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
        WordCheck { figures: &self.figures, tail: &line[start..], from: from - start }
    }

    /// Whether `line` (the current line of the text so far) followed by `next` keeps every
    /// number in digits inside the source's; with `end`, the text ends after `next`.
    pub fn allows(&self, line: &str, next: &str, end: bool) -> bool {
        // Only the trailing numeric run of `line` can still change; look from its start.
        let start = trailing_run(line);
        let text = format!("{}{next}", &line[start..]);
        for m in NUMBER.find_iter(&text) {
            let before = format!("{}{}", &line[..start], &text[..m.start()]);
            let line_before = before.rsplit('\n').next().unwrap_or("");
            let rest = &text[m.end()..];
            if let Some(counter) = COUNTER_CONTEXT.captures(line_before) {
                // Counting ("Question 2", or "3. " / "3) " at a line start) is not a figure. As the
                // gate reads it, only the digits count: after a label, what follows them ("Question
                // 3.5") is a figure; a bare line-start number counts once `.`/`)` and a space follow.
                let digits = m.as_str().find(['.', ',']).unwrap_or(m.len());
                if counter.get(1).is_some() {
                    let tail = m.as_str()[digits..].trim_start_matches(['.', ',']);
                    if tail.is_empty() || self.figures.states(&normalize(tail)) {
                        continue;
                    }
                    return false;
                }
                if digits == m.len() && list_marker(rest, end) {
                    continue;
                }
            }
            let whole = self.figures.states(&normalize(m.as_str()));
            // "2004." may yet close as "2004" or go on as "2004.5".
            let open = !end && rest.chars().all(|c| c == '.' || c == ',');
            if !(whole || open && self.prefixes.iter().any(|p| p.starts_with(&text[m.start()..]))) {
                return false;
            }
        }
        true
    }
}

/// The end of a line as [`NumberGuard::allows_word`] reads it: from the word before its open
/// number in words (if any), and where that number starts in it.
struct WordCheck<'a> {
    figures: &'a Figures,
    tail: &'a str,
    from: usize,
}

impl WordCheck<'_> {
    fn open(&self) -> bool {
        self.from < self.tail.len()
    }

    fn allows(&self, next: &str, end: bool) -> bool {
        word_numbers_keep_to(self.figures, &format!("{}{next}", self.tail), self.from, end)
    }
}

/// Whether `rest`, the text after a bare line-start number, is (or may still become) a list
/// marker's `.`/`)` and space; with `end`, nothing more comes.
fn list_marker(rest: &str, end: bool) -> bool {
    let after = match rest.chars().next() {
        None => return !end,
        Some('.' | ')') => &rest[1..],
        Some(_) => return false,
    };
    match after.chars().next() {
        None => !end,
        Some(c) => c.is_whitespace(),
    }
}

/// Byte offset where the trailing run of digits, `.` and `,` of `line` starts (its length when
/// the line does not end in one).
fn trailing_run(line: &str) -> usize {
    let mut start = line.len();
    for (i, c) in line.char_indices().rev() {
        if c == '.' || c == ',' || DIGIT.is_match(c.encode_utf8(&mut [0; 4])) {
            start = i;
        } else {
            break;
        }
    }
    start
}

/// The text of every token, and which tokens can touch a number: those with a digit, and those
/// that start with `.` or `,` (they continue a number or close it).
pub struct TokenTable {
    pub text: Vec<String>,
    numeric: Vec<u32>,
    is_numeric: Vec<bool>,
    with_digit: Vec<u32>,
    /// Tokens with an upper-case letter: the only ones that can start a name.
    with_upper: Vec<u32>,
    /// Tokens that start a word (whitespace, then a letter): the only ones the vocabulary guard
    /// checks.
    word_starts: Vec<u32>,
    /// Tokens that are one number word (" six", "Twenty"): the only ones that can write a
    /// number in words.
    number_words: Vec<u32>,
}

/// The name guard's verdicts after one line: inside a capitalised word (mid-sentence, or an
/// acronym) every token continues or closes it, and tokens that close it without a capital of
/// their own share one verdict (`closes_ok`); elsewhere only tokens with a capital are checked.
struct NameCheck<'a> {
    guard: &'a NameGuard,
    line: &'a str,
    /// `Some(whether closing the open word is allowed)` inside a capitalised word.
    closes_ok: Option<bool>,
}

impl<'a> NameCheck<'a> {
    fn new(guard: &'a NameGuard, line: &'a str) -> Self {
        let open = trailing_word(line);
        let word = open.trim_start_matches(['\'', '’']);
        // A mixed-case word must be the source's as written wherever it stands ("iPhone").
        let in_name = mixed_case(word)
            || word.chars().next().is_some_and(char::is_uppercase)
                && (acronym(word) || !sentence_start(&line[..line.len() - open.len()]));
        NameCheck { guard, line, closes_ok: in_name.then(|| guard.allows(line, " ")) }
    }

    fn allows(&self, t: &str) -> bool {
        self.guard.vocabulary_allows(t) && self.allows_name(t)
    }

    fn allows_name(&self, t: &str) -> bool {
        let upper = t.chars().any(char::is_uppercase);
        match self.closes_ok {
            Some(closes_ok) if !(t.starts_with(word_char) || upper) => closes_ok,
            Some(_) => self.guard.allows(self.line, t),
            None => !upper || self.guard.allows(self.line, t),
        }
    }
}

impl TokenTable {
    pub fn new(tokenizer: &Tokenizer, logits: usize) -> Self {
        Self::from_texts((0..logits as u32).map(|id| tokenizer.decode(&[id], true).unwrap_or_default()).collect())
    }

    /// The table of a vocabulary given as each token's text.
    pub fn from_texts(text: Vec<String>) -> Self {
        let with_digit: Vec<u32> = (0..text.len() as u32).filter(|&i| DIGIT.is_match(&text[i as usize])).collect();
        let is_numeric: Vec<bool> = text.iter().map(|t| DIGIT.is_match(t) || t.starts_with(['.', ','])).collect();
        let numeric = (0..text.len() as u32).filter(|&i| is_numeric[i as usize]).collect();
        let with_upper = (0..text.len() as u32).filter(|&i| text[i as usize].chars().any(char::is_uppercase)).collect();
        let number_words = (0..text.len() as u32).filter(|&i| is_number_word(&text[i as usize])).collect();
        let word_starts = (0..text.len() as u32)
            .filter(|&i| text[i as usize].strip_prefix(' ').is_some_and(|r| r.starts_with(char::is_alphabetic)))
            .collect();
        TokenTable { text, numeric, is_numeric, with_digit, with_upper, word_starts, number_words }
    }

    /// Masks every token of `logits` that `guard` forbids after `line` (see [`NameGuard`]).
    /// When that would leave no token at all, nothing is masked and it returns false.
    pub fn mask_names(&self, guard: &NameGuard, line: &str, logits: &mut [f32]) -> bool {
        let check = NameCheck::new(guard, line);
        let mut masked: Vec<(usize, f32)> = Vec::new();
        let mut forbid = |id: usize, forbidden: bool, logits: &mut [f32]| {
            if let Some(x) = logits.get_mut(id).filter(|x| x.is_finite())
                && forbidden
            {
                masked.push((id, *x));
                *x = f32::NEG_INFINITY;
            }
        };
        if check.closes_ok.is_some() {
            // Inside a capitalised word every token continues or closes it.
            for id in 0..logits.len().min(self.text.len()) {
                forbid(id, !check.allows(&self.text[id]), logits);
            }
        } else {
            // Elsewhere only tokens with a capital can start a name, and only tokens that start a
            // word can leave the vocabulary.
            for &id in &self.with_upper {
                forbid(id as usize, !check.allows(&self.text[id as usize]), logits);
            }
            if guard.guards_vocabulary() {
                for &id in &self.word_starts {
                    forbid(id as usize, !check.allows(&self.text[id as usize]), logits);
                }
            }
        }
        if !logits.iter().any(|x| x.is_finite()) {
            for (id, x) in masked {
                logits[id] = x;
            }
            return false;
        }
        true
    }

    /// Whether the name guard lets token `id` follow `line` (what [`TokenTable::mask_names`]
    /// decides for it).
    pub fn allows_name(&self, guard: &NameGuard, line: &str, id: usize) -> bool {
        self.text.get(id).is_none_or(|t| NameCheck::new(guard, line).allows(t))
    }

    /// Masks (sets to −∞) every token of `logits` that `guard` forbids after `line`; `eos` are
    /// the tokens that end the text. When the guard would leave no token at all (other
    /// constraints masked the allowed ones), nothing is masked and it returns false.
    pub fn mask(&self, guard: &NumberGuard, line: &str, eos: &[u32], logits: &mut [f32]) -> bool {
        let n = logits.len().min(self.text.len());
        let mut forbidden = self.forbidden_digits(guard, line, eos, n);
        forbidden.extend(self.forbidden_words(guard, line, eos, n));
        let mut masked: Vec<(usize, f32)> = Vec::new();
        for id in forbidden {
            if let Some(x) = logits.get_mut(id).filter(|x| x.is_finite()) {
                masked.push((id, *x));
                *x = f32::NEG_INFINITY;
            }
        }
        if !logits.iter().any(|x| x.is_finite()) {
            for (id, x) in masked {
                logits[id] = x;
            }
            return false;
        }
        true
    }

    /// The tokens that would write or close a number in digits the source lacks.
    fn forbidden_digits(&self, guard: &NumberGuard, line: &str, eos: &[u32], n: usize) -> Vec<usize> {
        let verdict = |id: &u32| !guard.allows(line, &self.text[*id as usize], false);
        if trailing_run(line) == line.len() {
            // No number is open: only tokens with a digit can break the rule.
            return self.with_digit.iter().filter(|id| verdict(id)).map(|&id| id as usize).collect();
        }
        // Any other token closes the open number: two checks decide for all of them, one for
        // tokens that start with a space (a list marker "3. " may close so) and one for the rest.
        let mut out: Vec<usize> = self.numeric.iter().filter(|id| verdict(id)).map(|&id| id as usize).collect();
        let (space_ok, other_ok) = (guard.allows(line, " ", false), guard.allows(line, "x", false));
        if !(space_ok && other_ok) {
            out.extend((0..n).filter(|&id| {
                let space = self.text[id].starts_with(char::is_whitespace);
                !self.is_numeric[id] && !(if space { space_ok } else { other_ok })
            }));
        }
        if !guard.allows(line, "", true) {
            out.extend(eos.iter().map(|&e| e as usize));
        }
        out
    }

    /// The tokens that would write or close a number in words the source lacks. While the line
    /// ends in a number in words that is no source figure, any token may close it: those that
    /// start with a letter, a space or a hyphen may also go on with it and are checked one by
    /// one; the rest close it and are forbidden.
    fn forbidden_words(&self, guard: &NumberGuard, line: &str, eos: &[u32], n: usize) -> Vec<usize> {
        let check = guard.words_after(line);
        let verdict = |id: usize| !check.allows(&self.text[id], false);
        let mut out: Vec<usize> = if check.allows(".", false) {
            let mut out: Vec<usize> =
                self.number_words.iter().map(|&id| id as usize).filter(|&id| verdict(id)).collect();
            // A token that goes on with the open number's last word makes another word of it
            // ("twenty-five" + "es"), which may leave a figure that is no source's.
            if line.ends_with(char::is_alphabetic) && check.open() {
                out.extend((0..n).filter(|&id| self.text[id].starts_with(char::is_alphabetic) && verdict(id)));
            }
            out
        } else {
            // Only a token that goes on with the last word, or that begins a word that may join the
            // number, can keep it open; the rest close it.
            (0..n)
                .filter(|&id| {
                    let t = &self.text[id];
                    let joined = t.trim_start_matches([' ', '-']);
                    let may_join = t.starts_with(char::is_alphabetic)
                        || joined.len() < t.len() && (joined.is_empty() || begins_number_word(joined));
                    !may_join || verdict(id)
                })
                .collect()
        };
        if !check.allows("", true) {
            out.extend(eos.iter().map(|&e| e as usize));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "Sales rose 2.5% to $1,200m in 2004, against 133,000 a year earlier.";

    #[test]
    fn the_vocabulary_guard_masks_every_word_start_outside_the_source_and_nothing_else() {
        let tok = crate::testkit::tiny_tokenizer();
        let n = tok.get_vocab_size(true);
        let table = TokenTable::new(&tok, n);
        let src = "The council met to discuss the roads.";
        let guard = NameGuard::new(src, &[]).with_vocabulary(src);
        let mut logits = vec![0.0f32; n];
        assert!(table.mask_names(&guard, "The council ", &mut logits));
        let allowed = |t: &str| (0..n).any(|i| table.text[i] == t && logits[i].is_finite());
        for t in table.word_starts.iter().map(|&i| table.text[i as usize].as_str()) {
            let head: String = t[1..].chars().take_while(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
            let ok = ["the", "council", "met", "to", "discuss", "roads", "road"].iter().any(|w| w.starts_with(&head))
                || crate::fidelity::words::FUNCTION_WORDS.iter().any(|w| w.starts_with(&head));
            assert_eq!(allowed(t), ok, "{t:?}");
        }
        assert!(table.word_starts.len() > 20 && allowed(" roads") == allowed(" road"), "a real test");
        // Tokens that do not start a word stay, and without the vocabulary nothing lower case goes.
        assert!(
            (0..n)
                .filter(|&i| !table.text[i].starts_with(' '))
                .all(|i| logits[i].is_finite() || table.text[i].chars().any(char::is_uppercase))
        );
        let mut plain = vec![0.0f32; n];
        assert!(table.mask_names(&NameGuard::new(src, &[]), "The council ", &mut plain));
        assert!(
            table
                .word_starts
                .iter()
                .all(|&i| plain[i as usize].is_finite() || table.text[i as usize].chars().any(char::is_uppercase))
        );
    }

    #[test]
    fn numbers_of_the_source_and_their_prefixes_pass() {
        let g = NumberGuard::new(SRC);
        for (line, next) in [("in ", "2"), ("in 2", "0"), ("in 200", "4"), ("in 2004", "."), ("in 2004.", " ")] {
            assert!(g.allows(line, next, false), "{line:?} + {next:?}");
        }
        assert!(g.allows("to $1,2", "00", false), "the written form");
        assert!(g.allows("to $120", "0m", false), "the normalized form");
        assert!(g.allows("rose 2", ".5%", false));
        assert!(g.allows("of 133", "000 ", false), "133,000 written without separators");
    }

    #[test]
    fn invented_or_unfinished_numbers_do_not() {
        let g = NumberGuard::new(SRC);
        assert!(!g.allows("by ", "7", false), "no source number starts with 7");
        assert!(!g.allows("by 20", "2", false), "2020 is not 2004");
        assert!(!g.allows("of 13", " ", false), "13 is only the start of 133000");
        assert!(!g.allows("of 13", "", true), "nor may the text end there");
        assert!(!g.allows("rose 2.5", "1", false));
        assert!(g.allows("of 133,000", "", true));
    }

    #[test]
    fn counters_are_left_alone_and_glued_digits_are_not() {
        let g = NumberGuard::new(SRC);
        assert!(g.allows("Question ", "7", false));
        assert!(g.allows("Question 7", ":", false));
        assert!(g.allows("", "9", false), "a list number at a line start");
        assert!(g.allows("9", ".", false) && g.allows("9.", " The", false) && g.allows("9", ") ", false));
        // A bare line-start number that is not followed by `.`/`)` and a space is a figure, as
        // for the gate.
        assert!(!g.allows("9", " people", false));
        assert!(!g.allows("\n9", "\u{1a}", false));
        assert!(!g.allows("9", "", true));
        assert!(!g.allows("Answer: the G", "8", false), "the gate reads G8's 8 as a number");
        assert!(!g.allows("Answer: in ", "9", false));
    }

    #[test]
    fn number_words_must_fit_a_source_figure() {
        let g = NumberGuard::new("Banned for 6 months, with twenty-five actors and 300 seats.");
        assert!(g.allows_word("banned for", " six", false) && g.allows_word("", "Six", false));
        assert!(!g.allows_word("banned for", " seven", false), "no 7 in the source");
        assert!(g.allows_word("with", " twenty", false) && g.allows_word("with twenty-", "five", false));
        assert!(!g.allows_word("with twenty-", "six", false), "26 is not 25");
        assert!(g.allows_word("some", " three", false), "three hundred");
        assert!(g.allows_word("some three", " hundred", false) && !g.allows_word("some two", " hundred", false));
        assert!(g.allows_word("of", "ten", false) && g.allows_word("the", " sixth", false), "not number words");
        assert!(!g.allows_word("banned for (", "two", false));
        // A figure is finished by what cannot join it, and must then be the source's.
        assert!(!g.allows_word("some three", " seats", false) && !g.allows_word("with twenty", "", true));
        assert!(g.allows_word("with twenty-five", " actors", false) && g.allows_word("some three hundred", ".", false));
        // And the other way: a figure in words may be written in digits, as the gate allows.
        let g = NumberGuard::new("It has twenty-five actors.");
        assert!(g.allows("has ", "2", false) && g.allows("has 25", " ", false) && !g.allows("has 26", " ", false));
    }

    #[test]
    fn a_figure_in_words_that_is_not_the_sources_cannot_be_closed() {
        let texts: Vec<String> = ["", " years", ".", " five", "-", "five", " hundred", " and", "\n", "ish"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let table = TokenTable::from_texts(texts.clone());
        let g = NumberGuard::new("It has twenty-five actors.");
        let mut logits = vec![0.0f32; texts.len()];
        assert!(table.mask(&g, "It has twenty", &[0], &mut logits));
        let open: Vec<&str> = (0..texts.len()).filter(|&i| logits[i].is_finite()).map(|i| texts[i].as_str()).collect();
        assert_eq!(open, vec![" five", "-", "five", "ish"], "only what goes on to 25 (or leaves numbers)");
    }
}
