//! Faithfulness checks of a rewrite against its source chunk: the share of word n-grams copied
//! verbatim ([`copy_share`]) and each sentence's support in the source, measured with the gate
//! embedder ([`support`]). Names and sentences are read by the rules in [`crate::fidelity`].
//!
//! ```
//! use wrapflow_operators::stages::gates::{copy_share, new_entities};
//! let src = "Hans Krebs studied the citric acid cycle at Sheffield, where the MRC funded his lab.";
//! let out = "Krebs's work on the cycle at Sheffield was funded by the MRC and praised by Watson.";
//! assert_eq!(new_entities(src, out, &[]), vec!["Watson".to_string()]);
//! assert!(copy_share(src, src, 5) > 0.99 && copy_share(src, out, 5) < 0.2);
//! ```

use std::collections::HashSet;

use crate::engine::{Embedder, cosine};
pub use crate::fidelity::names::{NOT_NAMES, QA_LABELS, format_words, new_entities};
pub use crate::fidelity::sentences::{label_end, sentences};

/// Word `n`-grams of a text, lower-cased (words keep their apostrophes).
pub(crate) fn ngrams(text: &str, n: usize) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.windows(n).map(|w| w.join(" ")).collect()
}

/// Share of the word `n`-grams of `output` that occur verbatim in `source` (0 when the output
/// has fewer than `n` words).
pub fn copy_share(source: &str, output: &str, n: usize) -> f64 {
    let src: HashSet<String> = ngrams(source, n).into_iter().collect();
    let out = ngrams(output, n);
    if out.is_empty() {
        return 0.0;
    }
    out.iter().filter(|g| src.contains(*g)).count() as f64 / out.len() as f64
}

/// Per sentence of `output` that states something (questions and labels aside), its best
/// embedding cosine to a sentence of `source`, in order.
pub fn support(embedder: &mut Embedder, source: &str, output: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let src = sentences(source);
    let claims: Vec<&str> = sentences(output)
        .into_iter()
        .map(|s| label_end(s).map_or(s, |e| s[e..].trim_start_matches(['*', ' '])))
        .filter(|s| !s.ends_with('?') && s.chars().any(char::is_alphanumeric))
        .collect();
    if src.is_empty() || claims.is_empty() {
        return Ok(vec![]);
    }
    let texts: Vec<&str> = src.iter().chain(&claims).copied().collect();
    let v = embedder.embed(&texts)?;
    let (sv, cv) = v.split_at(src.len());
    Ok(claims
        .iter()
        .zip(cv)
        .map(|(c, e)| (c.to_string(), sv.iter().map(|s| cosine(s, e) as f64).fold(f64::NEG_INFINITY, f64::max)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "Hans Krebs was a German-born British biochemist who discovered the citric acid cycle \
                       at Sheffield in 1937, and later moved to Oxford, where he taught for many years.";

    #[test]
    fn copy_share_measures_verbatim_five_grams() {
        assert!((copy_share(SRC, SRC, 5) - 1.0).abs() < 1e-9);
        let near_copy = SRC.replace("biochemist", "scientist");
        assert!(copy_share(SRC, &near_copy, 5) >= 0.75, "{}", copy_share(SRC, &near_copy, 5));
        let own = "Krebs, a biochemist born in Germany, worked in Britain; in 1937 at Sheffield he found the cycle.";
        assert!(copy_share(SRC, own, 5) < 0.1, "{}", copy_share(SRC, own, 5));
        assert_eq!(copy_share(SRC, "Too short.", 5), 0.0);
    }
}
