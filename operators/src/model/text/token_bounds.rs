//! Where each token of a text starts, fast, for byte-level BPE tokenizers.
//!
//! Chunking and `token_count()` need token counts and boundaries, not ids, character offsets or
//! masks, and `Tokenizer::encode` spends most of its time building those. For a byte-level BPE
//! whose pre-tokenization is the GPT-2 split (optionally after a digit split) with no
//! normalizer, [`TokenBounds`] splits the text into the same pre-tokens
//! ([`crate::model::text::gpt2_split`]) and hands each distinct pre-token to the tokenizer's own BPE
//! model once per thread, remembering the lengths of its tokens. Any other tokenizer, and any text that holds an added token's literal (those are
//! matched before pre-tokenization), goes through `Tokenizer::encode`.
//!
//! ```
//! use std::sync::Arc;
//! use tokenizers::models::bpe::BPE;
//! use tokenizers::pre_tokenizers::byte_level::ByteLevel;
//! use wrapflow_operators::model::text::token_bounds::TokenBounds;
//! // A byte-level BPE without merges: one token per byte.
//! let vocab: tokenizers::models::bpe::Vocab =
//!     ByteLevel::alphabet().into_iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
//! let mut tok = tokenizers::Tokenizer::new(BPE::builder().vocab_and_merges(vocab, vec![]).build().unwrap());
//! tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
//! let bounds = TokenBounds::new(Arc::new(tok));
//! assert!(bounds.is_fast());
//! assert_eq!(bounds.starts("ab c").unwrap(), vec![0, 1, 2, 3]);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use ahash::AHashMap;
use tokenizers::{Model, Tokenizer};

use crate::model::text::gpt2_split::split;

/// Distinct pre-tokens remembered per thread and tokenizer before the memory is given back
/// (an estimate: tens of MB at most; English web text has far fewer distinct words).
const CACHE_LIMIT: usize = 1 << 18;

/// Tokenizers remembered per thread: a long-lived process (a server, a followed job) makes a new
/// [`TokenBounds`] per job, and the least recently used one's memory goes.
const CACHES_PER_THREAD: usize = 4;

/// The byte lengths of each remembered pre-token's tokens.
type Lengths = AHashMap<Box<[u8]>, Box<[u16]>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Token lengths (bytes) of each pre-token seen, per [`TokenBounds`] instance, the most
    /// recently used first.
    static CACHE: RefCell<Vec<(u64, Lengths)>> = const { RefCell::new(Vec::new()) };
}

/// Token boundaries of texts under one tokenizer.
#[derive(Clone)]
pub struct TokenBounds {
    tok: Arc<Tokenizer>,
    /// `Some` when the fast path applies: the digit split that runs before GPT-2's, if any
    /// (`Some(true)`: each digit alone, `Some(false)`: digit runs).
    fast: Option<Option<bool>>,
    /// The tokenizer's added tokens by id: a text holding one takes `encode`.
    added: HashMap<u32, String>,
    id: u64,
}

impl TokenBounds {
    pub fn new(tok: Arc<Tokenizer>) -> Self {
        let fast = fast_split(&tok);
        let added = tok
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| !t.content.is_empty())
            .map(|(id, t)| (id, t.content))
            .collect();
        TokenBounds { tok, fast, added, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tok
    }

    /// Whether texts are split here rather than by `Tokenizer::encode`.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// The byte offset at which each token of `text` starts, in order; as many as `encode` gives.
    pub fn starts(&self, text: &str) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.each_start(text, &mut |at| out.push(at))?;
        Ok(out)
    }

    /// How many tokens `text` encodes to.
    pub fn count(&self, text: &str) -> anyhow::Result<usize> {
        if self.fast.is_none() {
            return Ok(self.tok.encode_fast(text, false).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?.len());
        }
        let mut n = 0;
        self.each_start(text, &mut |_| n += 1)?;
        Ok(n)
    }

    /// Calls `f` with each token's start, in order.
    fn each_start(&self, text: &str, f: &mut impl FnMut(usize)) -> anyhow::Result<()> {
        match self.fast {
            Some(digits) if !self.added.values().any(|a| text.contains(a.as_str())) => {
                CACHE.with_borrow_mut(|all| {
                    let cache = thread_cache(all, self.id);
                    let mut result = Ok(());
                    pretokens(text, digits, &mut |at, len| {
                        if result.is_ok() {
                            result = self.tokens_of(cache, &text[at..at + len], at, f);
                        }
                    });
                    result
                })?;
            }
            Some(_) => {
                // Byte-level tokens spell one character per byte; an added token spans its offsets.
                let enc = self.encode(text)?;
                let mut at = 0;
                for ((t, id), o) in enc.get_tokens().iter().zip(enc.get_ids()).zip(enc.get_offsets()) {
                    let added = self.added.contains_key(id);
                    f(if added { o.0 } else { at });
                    at = if added { o.1 } else { at + t.chars().count() };
                }
            }
            None => {
                // Offsets may be trimmed of a leading space; kept in order.
                let mut last = 0;
                for o in self.encode(text)?.get_offsets() {
                    last = o.0.max(last);
                    f(last);
                }
            }
        }
        Ok(())
    }

    fn encode(&self, text: &str) -> anyhow::Result<tokenizers::Encoding> {
        self.tok.encode(text, false).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))
    }

    /// Calls `f` with the starts of `piece`'s tokens (`piece` begins at byte `at` of the text),
    /// asking the BPE model only for a pre-token this thread has not seen.
    fn tokens_of(&self, cache: &mut Lengths, piece: &str, at: usize, f: &mut impl FnMut(usize)) -> anyhow::Result<()> {
        let emit = |lens: &[u16], f: &mut dyn FnMut(usize)| {
            lens.iter().fold(at, |pos, &len| {
                f(pos);
                pos + len as usize
            });
        };
        if let Some(lens) = cache.get(piece.as_bytes()) {
            emit(lens, f);
            return Ok(());
        }
        let mapped: String = piece.bytes().map(|b| BYTE_CHARS[b as usize]).collect();
        let tokens = self.tok.get_model().tokenize(&mapped).map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let lens: Box<[u16]> = tokens.iter().map(|t| t.value.chars().count() as u16).collect();
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        anyhow::ensure!(total == piece.len(), "tokenizer: BPE tokens of {piece:?} do not cover it");
        emit(&lens, f);
        cache.insert(piece.as_bytes().into(), lens);
        Ok(())
    }
}

/// This thread's cache for the [`TokenBounds`] numbered `id`, moved to the front; a new one
/// pushes out the least recently used beyond [`CACHES_PER_THREAD`], a full one starts over.
fn thread_cache(all: &mut Vec<(u64, Lengths)>, id: u64) -> &mut Lengths {
    match all.iter().position(|(i, _)| *i == id) {
        Some(i) => all[..=i].rotate_right(1),
        None => {
            all.truncate(CACHES_PER_THREAD - 1);
            all.insert(0, (id, Lengths::default()));
        }
    }
    let cache = &mut all[0].1;
    if cache.len() > CACHE_LIMIT {
        cache.clear();
    }
    cache
}

/// `Some(digit split)` when `tok` is a byte-level BPE without a normalizer whose
/// pre-tokenization is GPT-2's regex split, optionally after a `Digits` split.
fn fast_split(tok: &Tokenizer) -> Option<Option<bool>> {
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    let model = json(serde_json::to_value(tok.get_model()));
    let pre = json(serde_json::to_value(tok.get_pre_tokenizer()));
    let byte_level =
        |p: &serde_json::Value| p["type"] == "ByteLevel" && p["use_regex"] == true && p["add_prefix_space"] == false;
    let plain_bpe = model["type"] == "BPE"
        && model["dropout"].is_null()
        && model["byte_fallback"] != true
        && model["continuing_subword_prefix"].is_null()
        && model["end_of_word_suffix"].is_null();
    if tok.get_normalizer().is_some() || !plain_bpe {
        return None;
    }
    if byte_level(&pre) {
        return Some(None);
    }
    match pre["pretokenizers"].as_array().map(Vec::as_slice) {
        Some([digits, last]) if pre["type"] == "Sequence" && digits["type"] == "Digits" && byte_level(last) => {
            Some(Some(digits["individual_digits"] == true))
        }
        _ => None,
    }
}

/// Calls `f(start, len)` for each pre-token of `text`, in order: the digit split, then GPT-2's.
fn pretokens(text: &str, digits: Option<bool>, f: &mut impl FnMut(usize, usize)) {
    let Some(individual) = digits else { return split(text, 0, f) };
    let mut rest = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !c.is_numeric() {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek().filter(|(_, d)| !individual && d.is_numeric()) {
            end = j + d.len_utf8();
            chars.next();
        }
        split(&text[rest..i], rest, f);
        // A digit piece is one pre-token: GPT-2's `\p{N}+` takes all of it.
        f(i, end - i);
        rest = end;
    }
    split(&text[rest..], rest, f);
}

/// GPT-2's map from bytes to the printable characters its BPE vocabulary is written in.
static BYTE_CHARS: LazyLock<[char; 256]> = LazyLock::new(|| {
    let mut out = ['\0'; 256];
    // Printable bytes stand for themselves; the others, in order, for U+0100, U+0101, ...
    let mut next = 256;
    for (b, slot) in out.iter_mut().enumerate() {
        let code = if matches!(b, 33..=126 | 161..=172 | 174..=255) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).expect("GPT-2's byte characters are valid");
    }
    out
});

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level BPE with a few merges, GPT-2's split after a digit split, and one added token.
    fn tokenizer(digits: Option<bool>) -> Tokenizer {
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        let mut vocab: tokenizers::models::bpe::Vocab =
            ByteLevel::alphabet().into_iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
        let merges: Vec<(String, String)> =
            [("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e"), ("e", "r"), ("Ċ", "Ċ"), ("Ġ", "Ġ"), ("'", "s"), ("1", "2")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        for (a, b) in &merges {
            let n = vocab.len() as u32;
            vocab.insert(format!("{a}{b}"), n);
        }
        let mut tok = Tokenizer::new(BPE::builder().vocab_and_merges(vocab, merges).build().unwrap());
        let byte_level = ByteLevel::new(false, true, true);
        match digits {
            Some(individual) => {
                tok.with_pre_tokenizer(Some(Sequence::new(vec![Digits::new(individual).into(), byte_level.into()])))
            }
            None => tok.with_pre_tokenizer(Some(byte_level)),
        };
        tok.add_tokens([tokenizers::AddedToken::from("<|sep|>", true)]).unwrap();
        tok
    }

    /// What `encode` says: each token's start, its tokens being one character per byte.
    fn encoded_starts(tok: &Tokenizer, text: &str) -> Vec<usize> {
        let enc = tok.encode(text, false).unwrap();
        let mut at = 0;
        let mut starts = vec![];
        for t in enc.get_tokens() {
            starts.push(at);
            at += t.chars().count();
        }
        starts
    }

    #[test]
    fn fast_boundaries_equal_the_tokenizers_own() {
        let texts = [
            "The theory's other 12 writers  wrote\n\nthe letter.",
            "  leading spaces, trailing spaces   ",
            "tabs\t\tand\u{a0}\u{a0}no-break\u{3000}ideographic spaces\u{2009}x",
            "digits 2024 and ¹²³ and ١٢٣ (Arabic) and 3.14",
            "contractions: it's, we're, they've, I'm, you'll, he'd, IT'S",
            "emoji 🙂🙂 and café naïve Ünïcödé — “quotes” … done",
            "line\r\nbreaks\n \nand a lone\n",
            "",
            " ",
            "x",
        ];
        // Hand-made merges under each digit split, and a BPE trained on English text.
        let tokenizers =
            [tokenizer(None), tokenizer(Some(true)), tokenizer(Some(false)), crate::testkit::tiny_tokenizer()];
        for (k, tok) in tokenizers.into_iter().enumerate() {
            let bounds = TokenBounds::new(Arc::new(tok.clone()));
            assert!(bounds.is_fast());
            for text in texts.iter().copied().chain([crate::testkit::SAMPLE_TEXT]) {
                assert_eq!(bounds.starts(text).unwrap(), encoded_starts(&tok, text), "tokenizer {k}: {text:?}");
                assert_eq!(bounds.count(text).unwrap(), tok.encode(text, false).unwrap().len());
            }
            // Twice: the second pass reads the cache.
            let all = texts.concat();
            assert_eq!(bounds.starts(&all).unwrap(), encoded_starts(&tok, &all));
        }
    }

    #[test]
    fn a_thread_remembers_a_few_tokenizers_and_stays_right() {
        let tok = Arc::new(tokenizer(Some(true)));
        let text = crate::testkit::SAMPLE_TEXT;
        let want = encoded_starts(&tok, text);
        let many: Vec<TokenBounds> = (0..CACHES_PER_THREAD + 2).map(|_| TokenBounds::new(tok.clone())).collect();
        for b in many.iter().chain(many.iter().rev()) {
            assert_eq!(b.starts(text).unwrap(), want);
        }
        assert_eq!(CACHE.with_borrow(Vec::len), CACHES_PER_THREAD);
        assert_eq!(CACHE.with_borrow(|c| c[0].0), many[0].id, "the last used comes first");
    }

    #[test]
    fn an_added_token_or_another_pre_tokenizer_takes_encode() {
        let tok = tokenizer(Some(true));
        let bounds = TokenBounds::new(Arc::new(tok.clone()));
        let text = "before<|sep|>after the end";
        assert_eq!(bounds.starts(text).unwrap(), encoded_starts(&tok, text));
        // "before" 6 bytes, the added token, "after" with its "er" merged, " the", " end".
        assert_eq!(bounds.count(text).unwrap(), 6 + 1 + 4 + 1 + 4);
        let mut other = tok.clone();
        other.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        assert!(!TokenBounds::new(Arc::new(other)).is_fast());
    }
}
