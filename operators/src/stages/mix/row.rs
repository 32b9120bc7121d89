//! The rows of the mix stage: what it is offered ([`MixRow`]: a real chunk or an accepted
//! rephrasing), what it carries per mixture ([`MixItem`]), what it reports per shard
//! ([`MixShard`]), and the Arrow columns its `source` and `stage` expressions see.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::record::{Chunk, Synthetic, row_head};

/// A row offered to the mixtures: a real chunk or an accepted rephrasing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MixRow {
    pub text: String,
    /// `real` or `synthetic`.
    pub kind: String,
    /// Empty for real rows.
    pub style: String,
    pub doc_id: String,
    pub chunk_index: u32,
    pub n_tokens: u32,
    pub byte_start: u64,
    pub byte_end: u64,
    pub source_file: String,
    pub source_line: u64,
    /// Meaning kept, for rephrasings scored by an embedder.
    pub cosine: Option<f64>,
}

impl From<Chunk> for MixRow {
    fn from(c: Chunk) -> Self {
        MixRow {
            text: c.text,
            kind: "real".into(),
            style: String::new(),
            doc_id: c.doc_id,
            chunk_index: c.chunk_index,
            n_tokens: c.n_tokens,
            byte_start: c.byte_start,
            byte_end: c.byte_end,
            source_file: c.source_file,
            source_line: c.source_line,
            cosine: None,
        }
    }
}

impl From<Synthetic> for MixRow {
    fn from(s: Synthetic) -> Self {
        MixRow {
            text: s.text,
            kind: "synthetic".into(),
            style: s.style,
            doc_id: s.doc_id,
            chunk_index: s.chunk_index,
            n_tokens: s.n_tokens,
            byte_start: s.byte_start,
            byte_end: s.byte_end,
            source_file: s.source_file,
            source_line: s.source_line,
            cosine: Some(s.cosine).filter(|c| c.is_finite()),
        }
    }
}

/// A written shard of a mixture.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MixShard {
    pub mixture: String,
    /// The main file, relative to the output location (`.parquet`, `.jsonl`, or `.bin`).
    pub path: String,
    pub stage: String,
    pub rows: u64,
    pub tokens: u64,
    pub bytes: u64,
    /// Rows by kind, style (synthetic rows) and source; tokens by the same.
    pub kind_rows: BTreeMap<String, u64>,
    pub style_rows: BTreeMap<String, u64>,
    pub source_rows: BTreeMap<String, u64>,
    pub kinds: BTreeMap<String, u64>,
    pub styles: BTreeMap<String, u64>,
    pub sources: BTreeMap<String, u64>,
    /// Share of real tokens, achieved and targeted among this shard's leaves.
    pub real_share: f64,
    pub target_real_share: f64,
}

/// A row inside a mixture: shared across mixtures, with this mixture's token ids and source.
#[derive(Clone, Debug)]
pub struct MixItem {
    pub row: Arc<MixRow>,
    /// Ids from the mixture's training tokenizer (empty without one).
    pub ids: Vec<u32>,
    pub source: String,
}

pub(crate) fn row_fields() -> Vec<Field> {
    let mut f = crate::record::row_fields();
    f.push(Field::new("cosine", DataType::Float64, true));
    f
}

pub(crate) fn row_columns<'a>(rows: impl Iterator<Item = &'a MixRow> + Clone) -> Vec<ArrayRef> {
    let mut c = crate::record::row_columns(rows.clone().map(|r| row_head!(r, &r.kind, &r.style)));
    c.push(Arc::new(Float64Array::from_iter(rows.map(|r| r.cosine))));
    c
}

/// The columns that a mixture's `source` and `stage` expressions may use.
pub fn eval_schema() -> SchemaRef {
    Arc::new(Schema::new(row_fields()))
}

/// One timestamp's rows as a batch of [`eval_schema`].
pub fn eval_batch(rows: &[Arc<MixRow>]) -> arrow::error::Result<RecordBatch> {
    RecordBatch::try_new(eval_schema(), row_columns(rows.iter().map(|r| r.as_ref())))
}
