//! GPT-2's pre-tokenizer split, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
//! as a hand-written scanner: one look at each character instead of a regex search per
//! pre-token (the regex crate also has no look-around, so `(?!\S)` needed a fix-up anyway).
//!
//! The character classes come from `regex-syntax`'s Unicode tables, the ones a regex of the same
//! pattern would use; a test checks the scanner against that regex on random text.

use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Letter,
    Number,
    Space,
    Other,
}

/// The ranges of `\s`, `\p{L}` and `\p{N}`, and the kind of each ASCII character.
struct Classes {
    space: Vec<(char, char)>,
    letter: Vec<(char, char)>,
    number: Vec<(char, char)>,
    ascii: [Kind; 128],
}

fn ranges(class: &str) -> Vec<(char, char)> {
    let hir = regex_syntax::Parser::new().parse(class).expect("a valid class");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start(), r.end())).collect(),
        other => unreachable!("{class} parsed to {other:?}"),
    }
}

fn within(ranges: &[(char, char)], c: char) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

static CLASSES: LazyLock<Classes> = LazyLock::new(|| {
    let mut c =
        Classes { space: ranges(r"\s"), letter: ranges(r"\p{L}"), number: ranges(r"\p{N}"), ascii: [Kind::Other; 128] };
    for b in 0..128u8 {
        c.ascii[b as usize] = c.slow(b as char);
    }
    c
});

impl Classes {
    fn slow(&self, c: char) -> Kind {
        if within(&self.letter, c) {
            Kind::Letter
        } else if within(&self.number, c) {
            Kind::Number
        } else if within(&self.space, c) {
            Kind::Space
        } else {
            Kind::Other
        }
    }

    fn kind(&self, c: char) -> Kind {
        if c.is_ascii() { self.ascii[c as usize] } else { self.slow(c) }
    }
}

/// Calls `f(start, len)` for each of GPT-2's pre-tokens of `s` (which starts at byte `base` of
/// the text), in order.
pub fn split(s: &str, base: usize, f: &mut impl FnMut(usize, usize)) {
    let classes = &*CLASSES;
    let kind = |i: usize| s[i..].chars().next().map(|c| (classes.kind(c), c.len_utf8()));
    let run = |mut i: usize, k: Kind| {
        while let Some((_, n)) = kind(i).filter(|&(kk, _)| kk == k) {
            i += n;
        }
        i
    };
    let mut at = 0;
    while at < s.len() {
        let end = if let Some(n) = contraction(&s.as_bytes()[at..]) {
            at + n
        } else {
            let (k, n) = kind(at).expect("in the text");
            // ` ?` then a run of one kind: letters, numbers, or neither these nor spaces.
            let spaced = (s.as_bytes()[at] == b' ').then(|| kind(at + 1)).flatten().filter(|&(k, _)| k != Kind::Space);
            match spaced {
                Some((next, _)) => run(at + 1, next),
                None if k != Kind::Space => run(at + n, k),
                None => {
                    // `\s+(?!\S)`: a run of spaces before a visible character leaves its last one
                    // to lead the next pre-token (a run of one is `\s+`'s).
                    let end = run(at, Kind::Space);
                    let last = s[..end].chars().next_back().map_or(0, char::len_utf8);
                    if end < s.len() && end - at > last { end - last } else { end }
                }
            }
        };
        f(base + at, end - at);
        at = end;
    }
}

/// Length of the contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at the start of `b`.
fn contraction(b: &[u8]) -> Option<usize> {
    match b {
        [b'\'', b'r', b'e', ..] | [b'\'', b'v', b'e', ..] | [b'\'', b'l', b'l', ..] => Some(3),
        [b'\'', b's' | b't' | b'm' | b'd', ..] => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern through the regex crate, `(?!\S)` applied by hand.
    fn by_regex(s: &str) -> Vec<(usize, usize)> {
        static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+").unwrap()
        });
        let (mut out, mut pos) = (vec![], 0);
        while let Some(m) = RE.find_at(s, pos) {
            let mut end = m.end();
            if end < s.len() && m.as_str().chars().all(char::is_whitespace) {
                let last = m.as_str().chars().next_back().map_or(0, char::len_utf8);
                if m.len() > last {
                    end -= last;
                }
            }
            out.push((m.start(), end - m.start()));
            pos = end;
        }
        out
    }

    fn by_scanner(s: &str) -> Vec<(usize, usize)> {
        let mut out = vec![];
        split(s, 0, &mut |a, n| out.push((a, n)));
        out
    }

    /// The tokenizers library's own byte-level split (its regex engine is Oniguruma).
    fn by_tokenizers(s: &str) -> Vec<(usize, usize)> {
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let mut p = PreTokenizedString::from(s);
        ByteLevel::new(false, false, true).pre_tokenize(&mut p).unwrap();
        p.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (a, b), _)| (a, b - a))
            .collect()
    }

    #[test]
    fn the_scanner_splits_as_the_tokenizers_library_does_on_any_character() {
        // Random scalar values from every plane in use, between ASCII letters, digits and spaces,
        // so that a character whose class differs between the two Unicode tables would show.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for case in 0..4000 {
            let mut s = String::new();
            for _ in 0..24 {
                let c = match next(4) {
                    0 => Some([' ', 'a', '7', '\''][next(4) as usize]),
                    1 => char::from_u32(next(0x800) as u32),
                    2 => char::from_u32(next(0x1_0000) as u32),
                    _ => char::from_u32(next(0x3_2000) as u32),
                };
                s.extend(c);
            }
            assert_eq!(by_scanner(&s), by_tokenizers(&s), "case {case}: {s:?}");
        }
    }

    #[test]
    fn the_scanner_splits_as_the_regex_does() {
        let fixed = [
            "Hello world, it's 2024!  Isn't   it?\n\n\tYes'll 're 've 'm 'd 'x ''s",
            "  leading and trailing  ",
            "Caf\u{e9} na\u{ef}ve \u{65e5}\u{672c}\u{8a9e} \u{0663}\u{0664} \u{b2}\u{b3} \u{1f600}!! \u{a0}\u{a0}x \u{2003} y\r\n",
            "e\u{301}t\u{e9} \u{0915}\u{093f} \u{2028}z \u{85}",
            "",
            " ",
            "'",
            "a'",
        ];
        for s in fixed {
            assert_eq!(by_scanner(s), by_regex(s), "{s:?}");
        }
        const PIECES: [&str; 22] = [
            " ",
            "  ",
            "\n",
            "\t",
            "\u{a0}",
            "\u{3000}",
            "a",
            "Zz",
            "\u{e9}",
            "\u{65e5}",
            "1",
            "\u{0663}",
            "\u{b2}",
            "'",
            "'s",
            "'re",
            "'ll",
            "!",
            "...",
            "\u{1f600}",
            "\u{301}",
            "\u{2028}",
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..5000 {
            let mut s = String::new();
            for _ in 0..(case % 40) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                s.push_str(PIECES[(rng % PIECES.len() as u64) as usize]);
            }
            assert_eq!(by_scanner(&s), by_regex(&s), "case {case}: {s:?}");
        }
    }
}
