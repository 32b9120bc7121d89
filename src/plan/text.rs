//! Plan text handling: statement splitting, `${name}` substitution and positions.

use std::collections::BTreeMap;

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Line and column of a byte offset in `src`.
pub fn pos_of(src: &str, offset: usize) -> Pos {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos { line, col: src[line_start..offset].chars().count() + 1 }
}

/// Byte offset of a 1-based line and column in `s` (clamped to its end).
pub fn offset_of(s: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for _ in 1..line.max(1) {
        match s[off..].find('\n') {
            Some(i) => off += i + 1,
            None => return s.len(),
        }
    }
    s[off..].char_indices().nth(col.saturating_sub(1)).map_or(s.len(), |(i, _)| off + i)
}

/// Byte ranges of the `;`-separated statements of `src`, each starting at its first significant
/// character (comments and whitespace before it skipped). Quotes and comments are respected.
pub fn split_statements(src: &str) -> Vec<(usize, usize)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n + 1);
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b';' {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        if c == b'\'' || c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        }
        i += 1;
    }
    if let Some(s) = start {
        out.push((s, src.len()));
    }
    // Trim trailing whitespace so a statement ends at its last character.
    out.into_iter().map(|(s, e)| (s, s + src[s..e].trim_end().len())).filter(|(s, e)| e > s).collect()
}

/// A statement after `${name}` substitution, able to map its offsets back to the plan text.
#[derive(Clone, Debug)]
pub struct Substituted {
    pub text: String,
    /// (offset in `text`, offset in the plan, length in `text` of a substituted value or 0).
    segments: Vec<(usize, usize, usize)>,
}

impl Substituted {
    /// Plan offset of an offset in the substituted text; inside a value it is the `${`.
    pub fn plan_offset(&self, off: usize) -> usize {
        let mut best = (0, 0, 0);
        for &seg in &self.segments {
            if seg.0 <= off {
                best = seg;
            }
        }
        let (sub, orig, len) = best;
        if len > 0 && off < sub + len { orig } else { orig + (off - sub) }
    }
}

/// Parameter names used as `${name}` in `text`, with their offsets.
pub fn param_uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(j) = text[i..].find("${") {
        let s = i + j;
        match text[s..].find('}') {
            Some(k) => {
                out.push((s, text[s + 2..s + k].trim().to_string()));
                i = s + k + 1;
            }
            None => break,
        }
    }
    out
}

/// Replaces `${name}` in the statement `src[start..end]`. Inside a single-quoted string a value's
/// quotes are doubled, so a value can never end the string early; anywhere else a value must be
/// one number or one word ([`bare_value`]), so that it can never add SQL of its own. Errors carry
/// a plan offset.
pub fn substitute(
    src: &str,
    (start, end): (usize, usize),
    values: &BTreeMap<String, String>,
) -> Result<Substituted, (usize, String)> {
    let stmt = &src[start..end];
    let mut text = String::with_capacity(stmt.len());
    let mut segments = vec![(0, start, 0)];
    let mut in_quote = false;
    let mut i = 0;
    while i < stmt.len() {
        let rest = &stmt[i..];
        if rest.starts_with("${") {
            let close = rest.find('}').ok_or((start + i, "unclosed `${` (write `${name}`)".to_string()))?;
            let name = rest[2..close].trim();
            let value = values.get(name).ok_or_else(|| {
                (start + i, format!("parameter `{name}` has no value: declare `PARAM {name} DEFAULT '...'` or pass `--set {name}=...`"))
            })?;
            let value = if in_quote {
                value.replace('\'', "''")
            } else if bare_value(value) {
                value.clone()
            } else {
                return Err((
                    start + i,
                    format!(
                        "parameter `{name}` stands outside quotes, where its value must be one number or one word \
                         (letters, digits, `_`); got {value:?}"
                    ),
                ));
            };
            segments.push((text.len(), start + i, value.len()));
            text.push_str(&value);
            i += close + 1;
            segments.push((text.len(), start + i, 0));
            continue;
        }
        let c = rest.chars().next().expect("non-empty rest");
        if c == '\'' {
            in_quote = !in_quote;
        }
        text.push(c);
        i += c.len_utf8();
    }
    Ok(Substituted { text, segments })
}

/// A value that may stand outside quotes: a number (`-12`, `0.7`, `1e-3`) or a word of ASCII
/// letters, digits and `_` that starts with a letter or `_` (`JSONL`, `true`).
pub fn bare_value(v: &str) -> bool {
    let word = v.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let digits = v.strip_prefix('-').unwrap_or(v);
    let number = digits.starts_with(|c: char| c.is_ascii_digit()) && digits.parse::<f64>().is_ok_and(f64::is_finite);
    word || number
}

/// Offset of a `'` that opens a string never closed (`''` inside a string is a quote).
pub fn unclosed_quote(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut open) = (0, None);
    while i < b.len() {
        if open.is_none() {
            // Comments and double-quoted identifiers may hold apostrophes.
            let skip_to = match (b[i], b.get(i + 1)) {
                (b'-', Some(b'-')) => Some(text[i..].find('\n').map_or(b.len(), |n| i + n + 1)),
                (b'/', Some(b'*')) => Some(text[i + 2..].find("*/").map_or(b.len(), |n| i + n + 4)),
                (b'"', _) => Some(text[i + 1..].find('"').map_or(b.len(), |n| i + n + 2)),
                _ => None,
            };
            if let Some(j) = skip_to {
                i = j;
                continue;
            }
        }
        if b[i] == b'\'' {
            match open {
                None => open = Some(i),
                Some(_) if b.get(i + 1) == Some(&b'\'') => i += 1,
                Some(_) => open = None,
            }
        }
        i += 1;
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_respecting_quotes_and_comments() {
        let src = "-- head; comment\nSELECT 'a;b' ; /* x; */ CHUNK;\n\n SINK 'o'";
        let parts: Vec<&str> = split_statements(src).into_iter().map(|(s, e)| &src[s..e]).collect();
        assert_eq!(parts, vec!["SELECT 'a;b'", "CHUNK", "SINK 'o'"]);
    }

    #[test]
    fn finds_the_quote_that_never_closes() {
        assert_eq!(unclosed_quote("-- it's\nX 'a''b' /* don't */ \"o'k\" 'c"), Some(35));
        assert_eq!(unclosed_quote("X 'a''b' -- it's"), None);
    }

    #[test]
    fn substitutes_and_maps_positions() {
        let src = "X\nLOCATION '${in}' LIMIT ${n}";
        let mut v = BTreeMap::new();
        v.insert("in".to_string(), "it's".to_string());
        v.insert("n".to_string(), "10".to_string());
        let sub = substitute(src, (2, src.len()), &v).unwrap();
        assert_eq!(sub.text, "LOCATION 'it''s' LIMIT 10");
        // "LIMIT" in the substituted text maps back to "LIMIT" in the plan
        let off = sub.text.find("LIMIT").unwrap();
        assert_eq!(&src[sub.plan_offset(off)..sub.plan_offset(off) + 5], "LIMIT");
        assert_eq!(pos_of(src, sub.plan_offset(off)), Pos { line: 2, col: 18 });
        // Outside quotes a value is one number or one word, never SQL.
        for bad in ["JSONL LOCATION '/etc/passwd' --", "10; DROP", "1 OR 1=1", "", "a\nb", "x'"] {
            v.insert("n".to_string(), bad.to_string());
            let err = substitute(src, (2, src.len()), &v).unwrap_err();
            assert!(err.1.contains("parameter `n` stands outside quotes"), "{bad:?}: {}", err.1);
        }
        for good in ["-3", "0.7", "1e-3", "JSONL", "true", "_x1"] {
            v.insert("n".to_string(), good.to_string());
            assert!(substitute(src, (2, src.len()), &v).unwrap().text.ends_with(&format!("LIMIT {good}")), "{good}");
        }
        let err = substitute(src, (2, src.len()), &BTreeMap::new()).unwrap_err();
        assert_eq!(pos_of(src, err.0), Pos { line: 2, col: 11 });
        assert_eq!(offset_of("ab\ncd", 2, 2), 4);
    }
}
