//! Secrets never leave memory: values of `PARAM name SECRET`, of parameters that feed credential
//! options, and the user-info of URLs are replaced by `***` wherever wrapflow writes text: the
//! manifest, reports, `explain`, logs, errors and panics.
//!
//! Values are registered process-wide ([`register`]) as soon as a plan is parsed, so that every
//! writer, including the log writer and the panic hook, can redact them ([`redact`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{LazyLock, RwLock};

use regex::Regex;

use super::text::param_uses;

/// What a secret becomes.
pub const MASK: &str = "***";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// `scheme://user:password@` or `scheme://token@`.
static USER_INFO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s'\x22]+@").expect("a valid regex"));

/// Option names (store settings, API keys) whose values are credentials: one of these words
/// between underscores (`aws_session_token`, but not `max_tokens`), or a key pair.
static CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(^|_)(secret|password|passwd|pwd|token|credential|credentials|sas|apikey)(_|$)",
        r"|(api|access|account|private|service_account)_key"
    ))
    .expect("a valid regex")
});

/// True for an option or parameter name whose value is a credential (a name ending in `_env`
/// names a variable that holds one, and is not itself secret).
pub fn is_credential_name(name: &str) -> bool {
    CREDENTIAL.is_match(name) && !name.to_ascii_lowercase().ends_with("_env")
}

/// Secrets shorter than this are masked only where they stand as a whole word (see [`redact`]).
const SHORT: usize = 6;

/// Redacts `value` (and the forms it takes when quoted in SQL) from now on, whatever its length.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for v in [value.to_string(), value.replace('\'', "''")] {
        if !all.contains(&v) {
            all.push(v);
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret and every URL user-info masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for s in all.iter() {
        if !out.contains(s.as_str()) {
            continue;
        }
        out = Cow::Owned(if s.chars().count() >= SHORT { out.replace(s.as_str(), MASK) } else { mask_words(&out, s) });
    }
    match USER_INFO.replace_all(&out, format!("${{1}}{MASK}@")) {
        Cow::Borrowed(_) => out,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// `text` with each occurrence of a short `secret` masked where no letter or digit touches it:
/// masking every occurrence of a short value would garble ordinary text.
fn mask_words(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(secret) {
        let end = at + secret.len();
        if at < last || word(text[..at].chars().next_back()) || word(text[end..].chars().next()) {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// A writer that redacts what passes through it (the log writer: each event arrives in one
/// `write`).
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Panics print their message through [`redact`].
pub fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("<unnamed>").to_string();
        eprintln!("thread '{thread}' panicked{at}:\n{}", redact(&msg));
    }));
}

/// Parameters that feed credentials: named like one, or used as the value of an option named
/// like one (`'aws_secret_access_key' '${key}'`, `api_key = '${key}'`). Credential values
/// written literally in the plan are registered for redaction too.
pub fn credential_params(source: &str, params: &BTreeMap<String, String>) -> BTreeSet<String> {
    static OPTION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"'?([A-Za-z_][A-Za-z0-9_]*)'?\s*=?\s*'([^']*)'").expect("a valid regex")
    });
    let mut out: BTreeSet<String> = params.keys().filter(|k| is_credential_name(k)).cloned().collect();
    for c in OPTION.captures_iter(source) {
        if !is_credential_name(&c[1]) {
            continue;
        }
        let uses = param_uses(&c[2]);
        if uses.is_empty() {
            register(&c[2]);
        }
        out.extend(uses.into_iter().map(|(_, n)| n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_registered_values_and_url_user_info() {
        register("s3cr3t-K3y/with+chars");
        register("q7z");
        let t = "key s3cr3t-K3y/with+chars in 'http://admin:hunter22@127.0.0.1:9000/b' and q7z";
        assert_eq!(redact(t), "key *** in 'http://***@127.0.0.1:9000/b' and ***");
        // A short secret is masked wherever it stands alone, and nowhere inside a word.
        assert_eq!(redact("key='q7z', q7zed q7z9, (q7z), xq7z"), "key='***', q7zed q7z9, (***), xq7z");
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
        assert!(is_credential_name("aws_secret_access_key") && is_credential_name("aws_session_token"));
        assert!(!is_credential_name("aws_endpoint") && !is_credential_name("api_key_env"));
        assert!(is_credential_name("api_key") && is_credential_name("google_service_account_key"));
        assert!(!is_credential_name("max_tokens") && !is_credential_name("tokenizer"));
        let mut buf = Vec::new();
        write!(Redacting(&mut buf), "x s3cr3t-K3y/with+chars").unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "x ***");
    }
}
