//! Binding checks of [`super::grounding`]: the words beside a figure or a name, and a claim's
//! polarity, against the source sentences that hold the same figure, name or words.

use super::{Evidence, MIN_CLAIM_WORDS, Word, negates};

/// Whether a claim negates where its best single source sentence does not, or the other way
/// round; judged only when that sentence holds at least half the claim's content words (it is
/// the claim's evidence) and the claim has [`MIN_CLAIM_WORDS`]. Judging each clause against its
/// own best sentence caught more on the tuning pairs but also flagged good rows (2 of 41 at 64
/// tokens, against none), so the claim is the unit.
pub(super) fn flipped(ws: &[Word], singles: &[Evidence]) -> bool {
    let content: Vec<&Word> = ws.iter().filter(|w| w.content()).collect();
    let covered = |e: &Evidence| content.iter().filter(|w| e.holds(w)).count();
    content.len() >= MIN_CLAIM_WORDS
        && singles
            .iter()
            .max_by_key(|e| covered(e))
            .is_some_and(|one| 2 * covered(one) >= content.len() && one.negated != ws.iter().any(negates))
}

/// Words around a name that bind it: up to two content words on each side within its clause,
/// other names and figures aside.
const REACH: usize = 2;

/// Words that measure a figure rather than say what it counts: "15-foot board" counts boards.
const UNITS: &[&str] = &[
    "foot", "feet", "ft", "inch", "inches", "metre", "metres", "meter", "meters", "m", "km", "mile", "miles", "kg",
    "percent", "cent", "per", "million", "billion", "bn", "thousand", "hundred", "dozen", "pound", "pounds", "dollar",
    "dollars", "euro", "euros", "year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours",
];

/// The words after a figure that say what it counts: up to two content words after it within
/// its clause, units skipped. A year is left out: it dates an event, which a rewrite words its
/// own way ("began in 1967" / "in 1967, it started").
fn counted(ws: &[Word], i: usize) -> Vec<&Word> {
    let year = ws[i].figure.as_deref().and_then(|f| f.parse::<u32>().ok()).is_some_and(|y| (1000..=2100).contains(&y));
    if year || ws[i].clause_end {
        return vec![];
    }
    let mut out = Vec::new();
    for w in &ws[i + 1..] {
        if w.content() && w.figure.is_none() && !w.name && !UNITS.contains(&w.lower.as_str()) {
            out.push(w);
        }
        if w.clause_end || out.len() == 2 {
            break;
        }
    }
    out
}

/// The words around a name: up to [`REACH`] content words each side within its clause.
fn around(ws: &[Word], i: usize) -> Vec<&Word> {
    let plain = |x: &&Word| x.content() && x.figure.is_none() && !x.name;
    let mut near: Vec<&Word> = ws[..i].iter().rev().take_while(|x| !x.clause_end).filter(plain).take(REACH).collect();
    near.reverse();
    if !ws[i].clause_end {
        let mut after = Vec::new();
        for x in &ws[i + 1..] {
            if plain(&x) {
                after.push(x);
            }
            if x.clause_end || after.len() == REACH {
                break;
            }
        }
        near.extend(after);
    }
    near
}

/// Anchors (figures, or names) of one claim whose neighbours no source sentence with that
/// anchor holds: every word a figure counts ([`counted`]), more than half the words around a
/// name ([`around`]). An anchor the source lacks is another gate's.
pub(super) fn unbound(ws: &[Word], src: &[Vec<Word>], singles: &[Evidence], figures: bool, out: &mut Vec<String>) {
    let anchor = |w: &Word| if figures { w.figure.is_some() } else { w.name && w.figure.is_none() };
    let key = |w: &Word| if figures { w.figure.clone() } else { Some(w.stem.clone()) };
    for (i, w) in ws.iter().enumerate() {
        if !anchor(w) || out.iter().any(|o| o.starts_with(&format!("{} (", w.lower))) {
            continue;
        }
        let homes: Vec<&Evidence> = src
            .iter()
            .zip(singles)
            .filter(|(s, _)| s.iter().any(|x| anchor(x) && key(x) == key(w)))
            .map(|p| p.1)
            .collect();
        let neighbours = if figures { counted(ws, i) } else { around(ws, i) };
        if homes.is_empty() || neighbours.is_empty() {
            continue;
        }
        let held = |e: &&Evidence| neighbours.iter().filter(|n| e.holds(n)).count();
        let best = homes.iter().map(held).max().unwrap_or(0);
        let bound = if figures { best == neighbours.len() } else { 2 * best > neighbours.len() };
        if !bound {
            let names: Vec<&str> = neighbours.iter().map(|n| n.lower.as_str()).collect();
            out.push(format!("{} ({})", w.lower, names.join(", ")));
        }
    }
}
