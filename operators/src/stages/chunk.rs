//! **Chunk** stage: [`Document`]s in, [`Chunk`]s (and [`Reject`]s) out.
//!
//! Each document is split into chunks of at most `max_tokens` tokens of the rephraser's
//! tokenizer, breaking at a paragraph boundary if that fills at least `min_fill` of the budget,
//! else at a sentence boundary under the same rule, else at the last word boundary, and inside a
//! word only when the window has no whitespace at all. Near a document's end no fragment is left:
//! when the rest fits in one more chunk from the last sentence or paragraph break, the cut is
//! there however little it fills; when it fits in two but no break ends a sentence, the cut is
//! at the word nearest the rest's middle. A break sits just before a whitespace run,
//! which leads the next chunk, so the chunks of a document concatenate back to it byte for byte.
//!
//! Every chunk's `n_tokens` is its token count encoded alone, so the bound holds for what a model
//! sees. The document is encoded once; for byte-level BPE tokenizers with the GPT-2 split (GPT-2,
//! SmolLM2, ...) a break before whitespace is also a pre-token boundary, so the tokens of
//! a chunk alone are exactly the document's tokens in its span and are counted from the document's
//! token boundaries ([`TokenBounds`], which finds them without a full `encode`). For any other
//! tokenizer, and for breaks inside a word, each chunk is encoded again to count it.
//!
//! ```
//! use std::sync::Arc;
//! use tokenizers::models::wordlevel::WordLevel;
//! use tokenizers::pre_tokenizers::whitespace::Whitespace;
//! use wrapflow_operators::{ChunkConfig, Chunker};
//! // A word-level tokenizer: every word is one token.
//! let vocab = [("[UNK]".to_string(), 0)].into_iter().collect();
//! let model = WordLevel::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
//! let mut tokenizer = tokenizers::Tokenizer::new(model);
//! tokenizer.with_pre_tokenizer(Some(Whitespace {}));
//! let chunker = Chunker::new(&ChunkConfig { max_tokens: 16, ..Default::default() },
//!                            Arc::new(tokenizer)).unwrap();
//! let text = "The city council met on Tuesday to discuss the new budget for schools and roads. \
//!             Members said the plan would cost 12 million pounds over three years.\n\n\
//!             Local businesses welcomed the news and said the roads had been in a poor state.";
//! let pieces = chunker.split(text).unwrap();
//! assert!(pieces.len() > 1);
//! assert!(pieces.iter().all(|p| p.n_tokens <= 16));
//! assert_eq!(pieces.iter().map(|p| &text[p.start..p.end]).collect::<String>(), text);
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;
use tokenizers::Tokenizer;

use crate::model::text::token_bounds::TokenBounds;
use crate::record::{Chunk, Document, Reject};
use crate::stages::context::StageContext;
use crate::state::metrics::Histogram;

/// Settings of the chunk stage (`CHUNK WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// Upper bound on tokens per chunk (WRAP uses 300).
    pub max_tokens: usize,
    /// `tokenizer.json` of the rephraser; defaults to the plan's `TOKENIZER`.
    pub tokenizer: Option<String>,
    /// A paragraph or sentence break is used only if the chunk gets at least this share of
    /// `max_tokens`; otherwise the next finer boundary is tried (avoids tiny chunks).
    pub min_fill: f64,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig { max_tokens: 300, tokenizer: None, min_fill: 0.5 }
    }
}

/// A byte range of a document and its token count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub n_tokens: usize,
}

/// The chunking algorithm, shared by all workers.
#[derive(Clone)]
pub struct Chunker {
    bounds: TokenBounds,
    max_tokens: usize,
    min_fill: f64,
}

/// Loads a `tokenizer.json`, naming the file in the error.
pub fn load_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Word,
    Sentence,
    Paragraph,
}

impl Chunker {
    pub fn new(cfg: &ChunkConfig, tok: Arc<Tokenizer>) -> anyhow::Result<Self> {
        anyhow::ensure!(cfg.max_tokens >= 8, "CHUNK max_tokens must be at least 8, got {}", cfg.max_tokens);
        anyhow::ensure!((0.0..=1.0).contains(&cfg.min_fill), "CHUNK min_fill must be in [0, 1]");
        Ok(Chunker { bounds: TokenBounds::new(tok), max_tokens: cfg.max_tokens, min_fill: cfg.min_fill })
    }

    /// Builds a chunker whose tokenizer is `cfg.tokenizer`.
    pub fn from_config(cfg: &ChunkConfig) -> anyhow::Result<Self> {
        let path = cfg.tokenizer.as_deref().ok_or_else(|| anyhow::anyhow!("CHUNK needs a tokenizer"))?;
        Self::new(cfg, Arc::new(load_tokenizer(Path::new(path))?))
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        self.bounds.tokenizer()
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Splits `text` into consecutive pieces that cover it exactly.
    pub fn split(&self, text: &str) -> anyhow::Result<Vec<Piece>> {
        if text.is_empty() {
            return Ok(vec![]);
        }
        // Token starts of the whole document: a cheap estimate of how many tokens a span holds
        // (exact at whitespace breaks of a fast tokenizer); else the chunk is encoded alone.
        let starts = self.bounds.starts(text)?;
        if starts.len() <= self.max_tokens {
            return Ok(vec![Piece { start: 0, end: text.len(), n_tokens: starts.len() }]);
        }
        let tokens_before = |pos: usize| starts.partition_point(|&s| s < pos);
        let mut pieces = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let mut budget = self.max_tokens;
            loop {
                let first = tokens_before(pos);
                let limit = starts.get(first + budget).copied().unwrap_or(text.len()).max(pos);
                let cut = if limit >= text.len() {
                    text.len()
                } else {
                    self.best_cut(text, pos, limit, budget, &tokens_before)
                };
                let at_whitespace = cut == text.len() || text[cut..].starts_with(char::is_whitespace);
                let n = if self.bounds.is_fast() && at_whitespace {
                    tokens_before(cut) - first
                } else {
                    self.bounds.count(&text[pos..cut])?
                };
                if n <= self.max_tokens {
                    pieces.push(Piece { start: pos, end: cut, n_tokens: n });
                    pos = cut;
                    break;
                }
                let shrink = (n - self.max_tokens).max(1);
                anyhow::ensure!(budget > shrink, "cannot fit text at byte {pos} into {} tokens", self.max_tokens);
                budget -= shrink;
            }
        }
        Ok(pieces)
    }

    /// The break position in `(pos, limit]` preferred by the paragraph > sentence > word rule.
    fn best_cut(
        &self,
        text: &str,
        pos: usize,
        limit: usize,
        budget: usize,
        tokens_before: &dyn Fn(usize) -> usize,
    ) -> usize {
        let all: Vec<(usize, Level)> =
            boundaries(&text[pos..], limit - pos).into_iter().map(|(at, level)| (pos + at, level)).collect();
        let mut best: [Option<usize>; 3] = [None; 3];
        for &(b, level) in &all {
            best[level as usize] = Some(b);
        }
        let base = tokens_before(pos);
        let filled = |b: usize| (tokens_before(b) - base) as f64 >= self.min_fill * budget as f64;
        for level in [Level::Paragraph, Level::Sentence] {
            if let Some(b) = best[level as usize].filter(|&b| filled(b)) {
                return b;
            }
        }
        // When the rest of the document fits in one more chunk from the last sentence or
        // paragraph break, cut there however little it fills: a word cut would split the last
        // sentence and leave a fragment (" Lushan rebellion.") as the document's last chunk.
        let last_break = best[Level::Sentence as usize].max(best[Level::Paragraph as usize]);
        let rest = tokens_before(text.len()) - base;
        let fits_after = |b: usize| rest - (tokens_before(b) - base) <= self.max_tokens;
        if let Some(b) = last_break.filter(|&b| fits_after(b)) {
            return b;
        }
        // The rest fits in two chunks but no break ends a sentence: cut at the word nearest its
        // middle, so that the document does not end in a few words of a sentence that overran.
        if rest <= 2 * self.max_tokens
            && let Some(b) = all
                .iter()
                .map(|&(b, _)| b)
                .filter(|&b| fits_after(b))
                .min_by_key(|&b| (tokens_before(b) - base).abs_diff(rest / 2))
        {
            return b;
        }
        if let Some(b) = best.iter().flatten().max() {
            return *b;
        }
        // No whitespace in the window: cut inside the word, on a character boundary.
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut <= pos {
            cut = pos + text[pos..].chars().next().map_or(1, char::len_utf8);
        }
        cut
    }

    /// Chunks of one document, in order.
    pub fn chunk_doc(&self, doc: &Document) -> anyhow::Result<Vec<Chunk>> {
        Ok(self
            .split(&doc.text)?
            .into_iter()
            .enumerate()
            .map(|(i, p)| Chunk {
                doc_id: doc.id.clone(),
                chunk_index: i as u32,
                text: doc.text[p.start..p.end].to_string(),
                n_tokens: p.n_tokens as u32,
                byte_start: p.start as u64,
                byte_end: p.end as u64,
                source_file: doc.source_file.clone(),
                source_line: doc.source_line,
            })
            .collect())
    }
}

/// Break positions (byte offsets into `s`, at most `limit`) with their level. A break sits after
/// a whitespace run, so the next chunk starts on a visible character; CJK sentence punctuation
/// breaks without whitespace.
fn boundaries(s: &str, limit: usize) -> Vec<(usize, Level)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut prev_visible: Option<char> = None;
    while let Some((i, c)) = chars.next() {
        if i > limit {
            break;
        }
        if c.is_whitespace() {
            let mut newlines = usize::from(c == '\n');
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !d.is_whitespace() {
                    break;
                }
                newlines += usize::from(d == '\n');
                end = j + d.len_utf8();
                chars.next();
            }
            // Break before the run: it leads the next chunk (see the module docs).
            if i > 0 && end < s.len() {
                let level = if newlines >= 2 {
                    Level::Paragraph
                } else if prev_visible.is_some_and(ends_sentence) {
                    Level::Sentence
                } else {
                    Level::Word
                };
                out.push((i, level));
            }
        } else {
            let end = i + c.len_utf8();
            if matches!(c, '。' | '！' | '？') && end <= limit && end < s.len() {
                out.push((end, Level::Sentence));
            }
            // Closing quotes and brackets after a full stop still end the sentence.
            if !(matches!(c, '"' | '\'' | '”' | '’' | ')' | ']') && prev_visible.is_some_and(ends_sentence)) {
                prev_visible = Some(c);
            }
        }
    }
    out
}

fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

/// Length histogram of written rows (`chunk.length`, and each style's): 16-token bins up to
/// 1,024 tokens, longer rows in the last bin.
pub const LENGTH_HI: f64 = 1024.0;
pub const LENGTH_BINS: usize = 64;

/// Extension trait: chunk a stream of documents.
pub trait ChunkDocs<'scope, T: Timestamp> {
    /// Splits every document with the context's tokenizer; a document the tokenizer cannot
    /// handle becomes a [`Reject`] (stage `chunk`) on the second stream. Counts `chunk.chunks`,
    /// `chunk.tokens`, `chunk.max_tokens` (a maximum), the `chunk.length` histogram and
    /// `chunk.rejects`.
    fn chunk_docs(
        self,
        config: &ChunkConfig,
        ctx: &StageContext,
    ) -> (StreamVec<'scope, T, Chunk>, StreamVec<'scope, T, Reject>);
}

impl<'scope, T: Timestamp> ChunkDocs<'scope, T> for StreamVec<'scope, T, Document> {
    fn chunk_docs(
        self,
        config: &ChunkConfig,
        ctx: &StageContext,
    ) -> (StreamVec<'scope, T, Chunk>, StreamVec<'scope, T, Reject>) {
        let chunker = ctx.tokenizer_for("chunk").and_then(|t| match Chunker::new(config, t) {
            Ok(c) => Some(c),
            Err(e) => {
                ctx.fail_as(crate::fault::Fault::Model, format!("{e:#}"));
                None
            }
        });
        let ctx = ctx.clone();
        self.unary(Pipeline, "Chunk", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for batch in data {
                        // Without a chunker the run has failed (see `ctx.fail`): drop the input.
                        let Some(chunker) = &chunker else { continue };
                        for doc in batch.drain(..) {
                            match chunk_one(chunker, &doc) {
                                Ok(chunks) => {
                                    count_chunks(&ctx, &chunks);
                                    session.give_iterator(chunks.into_iter().map(Ok))
                                }
                                Err(e) => {
                                    let r = Reject {
                                        source_file: doc.source_file.clone(),
                                        source_line: doc.source_line,
                                        stage: "chunk".into(),
                                        reason: e.to_string(),
                                        snippet: doc.text.chars().take(160).collect(),
                                        doc_id: doc.id.clone(),
                                        ..Default::default()
                                    };
                                    ctx.metrics.add("chunk.rejects", 1);
                                    ctx.count_reject(&r);
                                    session.give(Err(r))
                                }
                            }
                        }
                    }
                });
            }
        })
        .container::<Vec<Result<Chunk, Reject>>>()
        .ok_err(|r| r)
    }
}

fn chunk_one(chunker: &Chunker, doc: &Document) -> anyhow::Result<Vec<Chunk>> {
    // Readers reject empty text, so this is the plan's SQL (NULL or '').
    if doc.text.trim().is_empty() {
        anyhow::bail!("empty text: the plan's SQL left no text to chunk")
    }
    chunker.chunk_doc(doc)
}

fn count_chunks(ctx: &StageContext, chunks: &[Chunk]) {
    ctx.metrics.update(|m| {
        for c in chunks {
            let n = c.n_tokens as u64;
            *m.counters.entry("chunk.chunks".into()).or_default() += 1;
            *m.counters.entry("chunk.tokens".into()).or_default() += n;
            let max = m.maxima.entry("chunk.max_tokens".into()).or_default();
            *max = (*max).max(n);
            m.histograms
                .entry("chunk.length".into())
                .or_insert_with(|| Histogram::new(LENGTH_HI, LENGTH_BINS))
                .add(n as f64);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{SAMPLE_TEXT, tiny_tokenizer};

    fn chunker(max: usize) -> Chunker {
        Chunker::new(&ChunkConfig { max_tokens: max, ..Default::default() }, Arc::new(tiny_tokenizer())).unwrap()
    }

    fn check(c: &Chunker, text: &str) -> Vec<Piece> {
        let pieces = c.split(text).unwrap();
        let joined: String = pieces.iter().map(|p| &text[p.start..p.end]).collect();
        assert_eq!(joined, text, "chunks concatenate to the document");
        for p in &pieces {
            let alone = c.tokenizer().encode(&text[p.start..p.end], false).unwrap().len();
            assert_eq!(alone, p.n_tokens);
            assert!(p.n_tokens <= c.max_tokens, "{} > {}", p.n_tokens, c.max_tokens);
            assert!(p.end > p.start, "no empty chunk");
        }
        pieces
    }

    #[test]
    fn prefers_paragraphs_then_sentences() {
        let para = "The team will publish its results next month. ".repeat(5);
        let text = format!("{}\n\n{}\n\n{}", para.trim_end(), para.trim_end(), para.trim_end());
        let c = chunker(40);
        let pieces = check(&c, &text);
        assert!(pieces.len() >= 4);
        let mut paragraph_breaks = 0;
        for p in &pieces[..pieces.len() - 1] {
            let t = &text[p.start..p.end];
            paragraph_breaks += usize::from(text[p.end..].starts_with("\n\n"));
            assert!(t.ends_with('.'), "break at paragraph or sentence: {t:?}");
        }
        assert!(paragraph_breaks >= 1);
        // Without sentences that fit, the break falls back to a word boundary.
        let text = "word ".repeat(200);
        let words = check(&c, &text);
        assert!(words.len() > 1 && words[1..].iter().all(|p| text[p.start..].starts_with(" word")), "whole words only");
        assert!(c.bounds.is_fast(), "the test tokenizer is a GPT-2 style byte-level BPE");
    }

    #[test]
    fn the_last_sentence_stays_whole_or_is_halved_when_the_rest_fits() {
        let (first, last) =
            ("It rained.", " The committee that met on Tuesday agreed to publish its report on the roads next month.");
        let count = |t: &str| tiny_tokenizer().encode(t, false).unwrap().len();
        let c = chunker(count(last) + 2);
        assert!((count(first) as f64) < 0.5 * c.max_tokens as f64, "the first sentence alone is under min_fill");
        let text = format!("{first}{last}");
        let pieces = check(&c, &text);
        let texts: Vec<&str> = pieces.iter().map(|p| &text[p.start..p.end]).collect();
        assert_eq!(texts, [first, last], "no word cut inside the last sentence");
        // A last sentence longer than a chunk is cut near its middle, not just before its end.
        let long = format!("{}, and{last}", last.trim_end_matches('.'));
        let c = chunker(count(&long) - 3);
        let halves = check(&c, &long);
        assert_eq!(halves.len(), 2);
        assert!(halves.iter().all(|p| p.n_tokens >= c.max_tokens / 3), "{halves:?}");
        // With more after it, the sentence break under min_fill is not taken: the word rule holds.
        let c = chunker(count(last) + 2);
        let text = format!("{first}{last}{last}");
        let pieces = check(&c, &text);
        assert!(!text[pieces[0].start..pieces[0].end].ends_with('.'), "{pieces:?}");
    }

    #[test]
    fn adversarial_text_keeps_invariants() {
        let long_word = "x".repeat(5000);
        let cjk = "我们今天讨论新的预算。学校和道路都需要钱！".repeat(40);
        let emoji = "🌍👩‍👩‍👧‍👦🎉".repeat(300);
        let mixed = format!("{}\n\n\n{}  \t {}{}", SAMPLE_TEXT, long_word, cjk, emoji);
        let c = chunker(24);
        for text in [long_word.as_str(), cjk.as_str(), emoji.as_str(), mixed.as_str(), "a", " ", "\n\n\n"] {
            check(&c, text);
        }
        assert!(c.split("").unwrap().is_empty());
    }

    #[test]
    fn other_tokenizers_count_each_chunk_alone() {
        let mut tok = tiny_tokenizer();
        tok.with_normalizer(Some(tokenizers::normalizers::utils::Lowercase)).unwrap();
        let c = Chunker::new(&ChunkConfig { max_tokens: 24, ..Default::default() }, Arc::new(tok)).unwrap();
        assert!(!c.bounds.is_fast());
        check(&c, SAMPLE_TEXT);
    }

    #[test]
    fn short_document_is_one_chunk() {
        let c = chunker(300);
        let p = check(&c, "Just one line.");
        assert_eq!(p.len(), 1);
    }
}
