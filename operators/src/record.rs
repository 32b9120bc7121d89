//! The records that flow between stages, and their Arrow form for sinks.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reject {
    pub source_file: String,
    /// 1-based record number, or 0 when the whole file is rejected.
    pub source_line: u64,
    /// Pipeline stage that rejected it (`read`, ...).
    pub stage: String,
    pub reason: String,
    /// The first bytes of the record, lossily decoded, to help find it.
    pub snippet: String,
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
        }
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

fn utf8<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(it))
}

impl ToBatch for Chunk {
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("text", DataType::Utf8, false),
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("chunk_index", DataType::UInt32, false),
            Field::new("n_tokens", DataType::UInt32, false),
            Field::new("byte_start", DataType::UInt64, false),
            Field::new("byte_end", DataType::UInt64, false),
            Field::new("source_file", DataType::Utf8, false),
            Field::new("source_line", DataType::UInt64, false),
        ]))
    }

    fn to_batch(rows: &[Self]) -> arrow::error::Result<RecordBatch> {
        RecordBatch::try_new(
            Self::schema(),
            vec![
                utf8(rows.iter().map(|r| r.text.as_str())),
                utf8(rows.iter().map(|r| r.doc_id.as_str())),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.chunk_index))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.n_tokens))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.byte_start))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.byte_end))),
                utf8(rows.iter().map(|r| r.source_file.as_str())),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.source_line))),
            ],
        )
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
            ],
        )
    }

    fn approx_bytes(&self) -> usize {
        self.source_file.len() + self.reason.len() + self.snippet.len() + 24
    }
}
