//! The records that flow between stages, and their Arrow form for sinks.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// A document that passed the plan's SQL, on its way into the dataflow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    pub text: String,
    /// Input object the document came from (relative to the source location).
    pub source_file: String,
    /// 1-based record number inside `source_file` (line for JSONL, row + 1 for Parquet).
    pub source_line: u64,
    /// Key for exact dedup (a 128-bit hash of the plan's `DEDUP ON` expression).
    pub dedup_key: u128,
}

/// A piece of a document: the chunks of a document concatenate back to its text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Chunk {
    pub doc_id: String,
    pub chunk_index: u32,
    pub text: String,
    /// Tokens of `text` encoded alone with the chunker's tokenizer.
    pub n_tokens: u32,
    /// Byte range of `text` in the document.
    pub byte_start: u64,
    pub byte_end: u64,
    pub source_file: String,
    pub source_line: u64,
}

/// An input record that could not be used, with where it came from and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reject {
    pub source_file: String,
    /// 1-based record number, or 0 when the whole file is rejected.
    pub source_line: u64,
    /// Pipeline stage that rejected it (`read`, ...).
    pub stage: String,
    pub reason: String,
    /// The record: its first bytes (lossily decoded) for input records, the whole output for a
    /// rephrasing that failed a gate.
    pub snippet: String,
    /// For rejected rephrasings: the chunk, the style and the gate scores (JSON); empty otherwise.
    pub doc_id: String,
    pub chunk_index: u32,
    pub style: String,
    pub scores: String,
}

impl Reject {
    pub fn read(file: &str, line: u64, reason: impl Into<String>, raw: &[u8]) -> Self {
        const SNIPPET: usize = 160;
        let cut = raw.len().min(SNIPPET);
        Reject {
            source_file: file.to_string(),
            source_line: line,
            stage: "read".into(),
            reason: reason.into(),
            snippet: String::from_utf8_lossy(&raw[..cut]).replace('\0', "\\0"),
            ..Default::default()
        }
    }

    /// The class of the reason: its text before the first `:` (what reports group by).
    pub fn class(&self) -> &str {
        self.reason.split(':').next().unwrap_or(&self.reason).trim()
    }
}

/// Rows that a sink can write: a fixed Arrow schema and a conversion.
pub trait ToBatch: Sized {
    fn schema() -> SchemaRef;
    fn to_batch(rows: &[Self]) -> arrow::error::Result<RecordBatch>;
    /// Tokens carried by the row, summed into shard statistics.
    fn tokens(&self) -> u64 {
        0
    }
    /// Approximate encoded size, for shard size limits.
    fn approx_bytes(&self) -> usize;
}

pub(crate) fn utf8<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(it))
}

/// The columns every output row starts with (real chunks and synthetic rows alike), so their
/// shards line up by name and position.
pub(crate) fn row_fields() -> Vec<Field> {
    vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("style", DataType::Utf8, false),
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("chunk_index", DataType::UInt32, false),
        Field::new("n_tokens", DataType::UInt32, false),
        Field::new("byte_start", DataType::UInt64, false),
        Field::new("byte_end", DataType::UInt64, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("source_line", DataType::UInt64, false),
    ]
}

/// One row's values of [`row_fields`].
pub(crate) struct RowHead<'a> {
    pub text: &'a str,
    pub kind: &'a str,
    pub style: &'a str,
    pub doc_id: &'a str,
    pub chunk_index: u32,
    pub n_tokens: u32,
    pub byte_start: u64,
    pub byte_end: u64,
    pub source_file: &'a str,
    pub source_line: u64,
}

/// The [`RowHead`] of any record with the common fields (`text`, `doc_id`, ... `source_line`).
macro_rules! row_head {
    ($r:expr, $kind:expr, $style:expr) => {
        $crate::record::RowHead {
            text: &$r.text,
            kind: $kind,
            style: $style,
            doc_id: &$r.doc_id,
            chunk_index: $r.chunk_index,
            n_tokens: $r.n_tokens,
            byte_start: $r.byte_start,
            byte_end: $r.byte_end,
            source_file: &$r.source_file,
            source_line: $r.source_line,
        }
    };
}
pub(crate) use row_head;

pub(crate) fn row_columns<'a>(heads: impl Iterator<Item = RowHead<'a>>) -> Vec<ArrayRef> {
    let h: Vec<RowHead<'a>> = heads.collect();
    vec![
        utf8(h.iter().map(|r| r.text)),
        utf8(h.iter().map(|r| r.kind)),
        utf8(h.iter().map(|r| r.style)),
        utf8(h.iter().map(|r| r.doc_id)),
        Arc::new(UInt32Array::from_iter_values(h.iter().map(|r| r.chunk_index))),
        Arc::new(UInt32Array::from_iter_values(h.iter().map(|r| r.n_tokens))),
        Arc::new(UInt64Array::from_iter_values(h.iter().map(|r| r.byte_start))),
        Arc::new(UInt64Array::from_iter_values(h.iter().map(|r| r.byte_end))),
        utf8(h.iter().map(|r| r.source_file)),
        Arc::new(UInt64Array::from_iter_values(h.iter().map(|r| r.source_line))),
    ]
}

impl ToBatch for Chunk {
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(row_fields()))
    }

    fn to_batch(rows: &[Self]) -> arrow::error::Result<RecordBatch> {
        RecordBatch::try_new(Self::schema(), row_columns(rows.iter().map(|r| row_head!(r, "real", ""))))
    }

    fn tokens(&self) -> u64 {
        self.n_tokens as u64
    }

    fn approx_bytes(&self) -> usize {
        self.text.len() + self.doc_id.len() + self.source_file.len() + 40
    }
}

impl ToBatch for Reject {
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("source_file", DataType::Utf8, false),
            Field::new("source_line", DataType::UInt64, false),
            Field::new("stage", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("snippet", DataType::Utf8, false),
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("chunk_index", DataType::UInt32, false),
            Field::new("style", DataType::Utf8, false),
            Field::new("scores", DataType::Utf8, false),
        ]))
    }

    fn to_batch(rows: &[Self]) -> arrow::error::Result<RecordBatch> {
        RecordBatch::try_new(
            Self::schema(),
            vec![
                utf8(rows.iter().map(|r| r.source_file.as_str())),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.source_line))),
                utf8(rows.iter().map(|r| r.stage.as_str())),
                utf8(rows.iter().map(|r| r.reason.as_str())),
                utf8(rows.iter().map(|r| r.snippet.as_str())),
                utf8(rows.iter().map(|r| r.doc_id.as_str())),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.chunk_index))),
                utf8(rows.iter().map(|r| r.style.as_str())),
                utf8(rows.iter().map(|r| r.scores.as_str())),
            ],
        )
    }

    fn approx_bytes(&self) -> usize {
        self.source_file.len() + self.reason.len() + self.snippet.len() + self.doc_id.len() + self.scores.len() + 40
    }
}

/// A rephrasing that passed every gate, with its lineage: the chunk it rewrites (and through it
/// the input file and line), the model, the prompt template, the decoding settings, the scores.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Synthetic {
    pub text: String,
    pub style: String,
    pub doc_id: String,
    pub chunk_index: u32,
    /// Tokens of `text` with the chunker's tokenizer (comparable with real chunks' `n_tokens`).
    pub n_tokens: u32,
    /// Byte range of the source chunk in its document.
    pub byte_start: u64,
    pub byte_end: u64,
    pub source_file: String,
    pub source_line: u64,
    /// Model directory name, and `blake3:` of its weights file.
    pub model: String,
    pub weights_hash: String,
    pub template_hash: String,
    /// Decoding settings as JSON.
    pub generation: String,
    /// Cosine between the source and output embeddings (NaN without an embedder).
    pub cosine: f64,
    pub length_ratio: f64,
    pub repetition: f64,
    pub qa_pairs: u32,
    pub chatter_stripped: bool,
    /// Numbers of `text` that the source lacks (0 unless the style turns the number gate off).
    pub invented_numbers: u32,
    /// Answers the model gave for this task (more than 1 after retries).
    pub attempts: u32,
    /// Tokens at which number-constrained decoding overrode the model's first choice (the
    /// numbers it wrote there are the source's, but a reviewer may want to check their facts).
    #[serde(default)]
    pub numbers_guarded: u32,
    /// Tokens at which name-constrained decoding overrode the model's first choice.
    #[serde(default)]
    pub names_guarded: u32,
    /// Share of the text's word 5-grams copied verbatim from the source.
    #[serde(default)]
    pub copy_share: f64,
    /// Names in the text that the source lacks (0 unless the style turns that gate off).
    #[serde(default)]
    pub new_entities: u32,
    /// Sentences without a source sentence at the support threshold (0 unless the style turns
    /// that gate off, or without an embedder), and whether a trailing one was dropped.
    #[serde(default)]
    pub unsupported_sentences: u32,
    #[serde(default)]
    pub trimmed: bool,
    /// The grounding checks (`stages::gates::grounding`): the least share of a claim's
    /// content words found in its best source evidence, and the counts of unknown words,
    /// unbound figures and names, claims joining names no source sentence joins, and claims of
    /// flipped polarity (each 0 while its gate is on, but for `names`, off by default).
    #[serde(default)]
    pub coverage: f64,
    #[serde(default)]
    pub unknown_words: u32,
    #[serde(default)]
    pub unbound_figures: u32,
    #[serde(default)]
    pub unbound_names: u32,
    #[serde(default)]
    pub scattered_anchors: u32,
    #[serde(default)]
    pub flipped_polarity: u32,
    /// The claim-reading gates, when the plan has them: the least probability that the source
    /// entails a claim (`entailment`), and the largest share of a claim's tokens the `lm` gate's
    /// model found unsupported.
    #[serde(default)]
    pub entailment: Option<f64>,
    #[serde(default)]
    pub lm_unsupported: Option<f64>,
}

impl ToBatch for Synthetic {
    fn schema() -> SchemaRef {
        let mut fields = row_fields();
        fields.extend([
            Field::new("model", DataType::Utf8, false),
            Field::new("weights_hash", DataType::Utf8, false),
            Field::new("template_hash", DataType::Utf8, false),
            Field::new("generation", DataType::Utf8, false),
            Field::new("cosine", DataType::Float64, true),
            Field::new("length_ratio", DataType::Float64, false),
            Field::new("repetition", DataType::Float64, false),
            Field::new("qa_pairs", DataType::UInt32, false),
            Field::new("chatter_stripped", DataType::Boolean, false),
            Field::new("invented_numbers", DataType::UInt32, false),
            Field::new("attempts", DataType::UInt32, false),
            Field::new("numbers_guarded", DataType::UInt32, false),
            Field::new("names_guarded", DataType::UInt32, false),
            Field::new("copy_share", DataType::Float64, false),
            Field::new("new_entities", DataType::UInt32, false),
            Field::new("unsupported_sentences", DataType::UInt32, false),
            Field::new("trimmed", DataType::Boolean, false),
            Field::new("coverage", DataType::Float64, false),
            Field::new("unknown_words", DataType::UInt32, false),
            Field::new("unbound_figures", DataType::UInt32, false),
            Field::new("unbound_names", DataType::UInt32, false),
            Field::new("scattered_anchors", DataType::UInt32, false),
            Field::new("flipped_polarity", DataType::UInt32, false),
            Field::new("entailment", DataType::Float64, true),
            Field::new("lm_unsupported", DataType::Float64, true),
        ]);
        Arc::new(Schema::new(fields))
    }

    fn to_batch(rows: &[Self]) -> arrow::error::Result<RecordBatch> {
        let f64s = |f: fn(&Self) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
        let u32s = |f: fn(&Self) -> u32| Arc::new(UInt32Array::from_iter_values(rows.iter().map(f))) as ArrayRef;
        let mut columns = row_columns(rows.iter().map(|r| row_head!(r, "synthetic", &r.style)));
        columns.extend([
            utf8(rows.iter().map(|r| r.model.as_str())),
            utf8(rows.iter().map(|r| r.weights_hash.as_str())),
            utf8(rows.iter().map(|r| r.template_hash.as_str())),
            utf8(rows.iter().map(|r| r.generation.as_str())),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| Some(r.cosine).filter(|c| c.is_finite())))),
            f64s(|r| r.length_ratio),
            f64s(|r| r.repetition),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.qa_pairs))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.chatter_stripped)))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.invented_numbers))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.attempts))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.numbers_guarded))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.names_guarded))),
            f64s(|r| r.copy_share),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.new_entities))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unsupported_sentences))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.trimmed)))),
            f64s(|r| r.coverage),
            u32s(|r| r.unknown_words),
            u32s(|r| r.unbound_figures),
            u32s(|r| r.unbound_names),
            u32s(|r| r.scattered_anchors),
            u32s(|r| r.flipped_polarity),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.entailment))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.lm_unsupported))),
        ]);
        RecordBatch::try_new(Self::schema(), columns)
    }

    fn tokens(&self) -> u64 {
        self.n_tokens as u64
    }

    fn approx_bytes(&self) -> usize {
        self.text.len() + self.doc_id.len() + self.source_file.len() + self.generation.len() + 200
    }
}
