//! C4's line rules (Raffel et al. 2020), as datatrove's `C4QualityFilter` applies them with its
//! defaults: a document keeps only its lines that end in terminal punctuation (not an
//! ellipsis), have at least 3 words, have no word over 1,000 characters and mention neither
//! "javascript" nor a cookie or policy phrase; Wikipedia citation marks are removed; the whole
//! document goes when a kept line holds "lorem ipsum", or a curly bracket (datatrove checks
//! "javascript" first: such a line alone goes), or when its kept lines
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

/// Tokens whose full stop does not end a sentence: spaCy 3.8's English tokenizer exceptions that
/// end in one (`spacy.blank("en").tokenizer.rules`), case as written.
const EXCEPTIONS: [&str; 147] = [
    "._.", "10a.m.", "10p.m.", "11a.m.", "11p.m.", "12a.m.", "12p.m.", "1a.m.", "1p.m.", "2a.m.", "2p.m.", "3a.m.",
    "3p.m.", "4a.m.", "4p.m.", "5a.m.", "5p.m.", "6a.m.", "6p.m.", "7a.m.", "7p.m.", "8a.m.", "8p.m.", "9a.m.",
    "9p.m.", "Adm.", "Ak.", "Ala.", "Apr.", "Ariz.", "Ark.", "Aug.", "Bros.", "Calif.", "Co.", "Colo.", "Conn.",
    "Corp.", "D.C.", "Dec.", "Del.", "Dr.", "E.G.", "E.g.", "Feb.", "Fla.", "Ga.", "Gen.", "Gov.", "I.E.", "I.e.",
    "Ia.", "Id.", "Ill.", "Inc.", "Ind.", "Jan.", "Jr.", "Jul.", "Jun.", "Kan.", "Kans.", "Ky.", "La.", "Ltd.", "Mar.",
    "Mass.", "Md.", "Messrs.", "Mich.", "Minn.", "Miss.", "Mo.", "Mont.", "Mr.", "Mrs.", "Ms.", "Mt.", "N.C.", "N.D.",
    "N.H.", "N.J.", "N.M.", "N.Y.", "Neb.", "Nebr.", "Nev.", "Nov.", "Oct.", "Okla.", "Ore.", "Pa.", "Ph.D.", "Prof.",
    "Rep.", "Rev.", "S.C.", "Sen.", "Sep.", "Sept.", "St.", "Tenn.", "Va.", "Wash.", "Wis.", "a.", "a.m.", "b.", "c.",
    "co.", "d.", "e.", "e.g.", "f.", "g.", "h.", "i.", "i.e.", "j.", "k.", "l.", "m.", "n.", "o.", "p.", "p.m.", "q.",
    "r.", "s.", "t.", "u.", "v.", "v.s.", "vs.", "w.", "x.", "y.", "z.", "°C.", "°F.", "°K.", "°c.", "°f.", "°k.",
    "ä.", "ö.", "ü.",
];

/// Characters spaCy splits off a word's end before its final mark is read, and off its start.
const CLOSERS: [char; 11] = ['"', '\'', ')', ']', '}', '”', '’', '»', ',', ';', ':'];
const OPENERS: [char; 12] = ['"', '\'', '(', '[', '{', '“', '‘', '«', '$', '£', '€', '¥'];
const QUOTES: &str = "'\"”“`‘´’‚„»«";
/// Besides lower-case letters and digits, a full stop after one of these is split off (spaCy's
/// suffix rule), and so ends a sentence.
const SPLIT_AFTER: &str = "%²-+…,:;!?()[]{}<>_#*&'\"”“`‘´’‚„»«";

/// Line breaks as Python's `str.splitlines` knows them.
fn line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Whether `word` ends in a sentence mark as spaCy tokenizes it: `!` or `?`, or a full stop it
/// splits off (after a lower-case letter, a digit, punctuation or two capitals) unless the word
/// is one of its exceptions (`Dr.`, `p.m.`) or a number with a one-letter unit (`5m.`); closing
/// quotes, brackets and commas after the mark do not matter.
fn ends_sentence(word: &str) -> bool {
    let w = word.trim_end_matches(CLOSERS);
    if w.ends_with(['!', '?']) {
        return true;
    }
    let token = w.trim_start_matches(OPENERS);
    let Some(body) = token.strip_suffix('.') else { return false };
    if EXCEPTIONS.contains(&token) {
        return false;
    }
    let mut rev = body.chars().rev();
    match (rev.next(), rev.next()) {
        // A lone full stop is a token of its own.
        (None, _) => true,
        (Some('.'), _) => false,
        (Some('m' | 'g' | 't'), Some(d)) if d.is_ascii_digit() => false,
        (Some(a), _) if a.is_lowercase() || a.is_ascii_digit() || SPLIT_AFTER.contains(a) => true,
        (Some(a), Some(b)) => a.is_uppercase() && b.is_uppercase(),
        _ => false,
    }
}

/// Full stops inside `word` that spaCy splits into a token of their own (`year.The`): between a
/// lower-case letter or quote and a capital or quote, unless what comes before is an exception.
fn inner_stops(word: &str) -> usize {
    let core = word.trim_start_matches(OPENERS).trim_end_matches(CLOSERS).trim_end_matches(['.', '!', '?']);
    let quote_or = |c: Option<char>, case: fn(char) -> bool| c.is_some_and(|c| case(c) || QUOTES.contains(c));
    core.char_indices()
        .filter(|&(i, c)| {
            c == '.'
                && quote_or(core[..i].chars().next_back(), char::is_lowercase)
                && quote_or(core[i + 1..].chars().next(), char::is_uppercase)
                && !EXCEPTIONS.contains(&&core[core[..i].rfind('.').map_or(0, |k| k + 1)..=i])
        })
        .count()
}

/// Sentences of one line, as spaCy's rule-based sentencizer (`spacy.blank("en")` with
/// `sentencizer`) counts them: one, plus one for each sentence mark that a word follows.
pub fn c4_sentences(line: &str) -> usize {
    let words: Vec<&str> = line.split_whitespace().collect();
    // A mark starts a sentence only if a word (not bare punctuation) follows it.
    let Some(last_word) = words.iter().rposition(|w| w.chars().any(char::is_alphanumeric)) else {
        return usize::from(!words.is_empty());
    };
    let ends = words[..last_word].iter().filter(|w| ends_sentence(w)).count();
    1 + ends + words.iter().map(|w| inner_stops(w)).sum::<usize>()
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
        // datatrove's order: a line mentioning javascript goes before its bracket can drop the
        // whole document.
        let lower = line.to_lowercase();
        if lower.contains("lorem ipsum") {
            return None;
        }
        if lower.contains("javascript") {
            continue;
        }
        if line.contains('{') {
            return None;
        }
        if POLICY.iter().any(|p| lower.contains(p)) {
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
        // A bracket or lorem ipsum on a line that is dropped anyway does not count; nor does a
        // bracket on a line that mentions javascript (datatrove drops that line first).
        assert!(c4_clean(&format!("{FIVE}\nfunction() {{\nlorem ipsum")).is_some());
        assert_eq!(c4_clean(&format!("{FIVE}\nEnable JavaScript: {{ on }} in settings.")).as_deref(), Some(FIVE));
        assert_eq!(c4_clean("One here. Two here.\nThree here. Four here."), None, "four sentences");
    }

    #[test]
    fn sentences_are_counted_as_spacy_splits_them() {
        assert_eq!(c4_sentences("Dr. Smith met Mr. Jones at 3 p.m. today. They talked!"), 2);
        assert_eq!(c4_sentences("He said \"stop.\" Then he left. The USA. And J. K. Rowling wrote."), 4);
        assert_eq!(c4_sentences("It was 1997. Wait... then it rained? Yes."), 3);
        // Split after `%` and `)`, and inside `year.The`; not after a one-letter unit (`$5m.`).
        assert_eq!(c4_sentences("Profits rose 5%. Sales fell (sharply). The year.The end."), 4);
        assert_eq!(c4_sentences("It cost $5m. Then 5kg. More at No. 10 today."), 3);
        assert_eq!(c4_sentences("He won.\""), 1);
        assert_eq!(c4_sentences(""), 0);
    }
}
