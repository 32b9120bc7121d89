//! # wrapflow-operators
//!
//! The building blocks of a wrapflow pipeline, usable on their own inside any timely dataflow or
//! DataFusion session:
//!
//! | module | what it gives |
//! |---|---|
//! | [`record`] | the records that flow: [`Document`], [`Chunk`], [`Synthetic`], [`Reject`] |
//! | [`sql`] | the DataFusion side: input listing (what is read, what is skipped and why), a `TableProviderFactory` (`STORED AS JSONL / PARQUET / TEXT`) whose readers turn bad records into rejects, and the filter UDFs (`token_count`, the C4 and Gopher heuristics, `content_hash`) |
//! | [`stages`] | the timely stages: exact and near-duplicate dedup ([`stages::dedup`]), [`stages::chunk`], the style [`stages::fanout`], [`stages::rephrase`] with the [`stages::styles`], the [`stages::gates`], and the [`stages::mix`] of training mixtures |
//! | [`io`] | object-store locations, atomic Parquet / JSONL shards, the rephrase journal, token shards for training |
//! | [`fault`] | what a failure is about (input, model, output), for front ends that sort errors by kind |
//! | [`state`] | checkpoint hooks: stages register their state, the driver saves it at quiescent cuts and loads it on resume |
//! | [`engine`] | ONNX Runtime setup and batched generation with KV cache and continuous batching; the embedder |
//! | [`model`] | GGUF reading and the import of llama models into ONNX (fp32 or 4-bit), the BERT embedder import |
//!
//! Every stage is an extension trait on a timely [`timely::dataflow::StreamVec`] with one shape,
//! `stream.stage(&Config, &StageContext)`: a serde config, and the worker's [`StageContext`]
//! (checkpoint registry, metrics, failures, tokenizer, output, model sessions), in the style of
//! timely's own operators.

// Stages split streams with `Result<Row, Reject>` records (`ok_err`): both sides are full rows by
// design, and boxing the reject would cost an allocation per record.
#![allow(clippy::result_large_err)]

pub mod engine;
pub mod fault;
pub mod fidelity;
pub mod io;
pub mod model;
pub mod record;
pub mod sql;
pub mod stages;
pub mod state;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

/// ARCHITECTURE.md's code, compiled and run as doc tests (its worked example of a stage).
#[cfg(doctest)]
#[doc = include_str!("../../ARCHITECTURE.md")]
pub struct Architecture;

pub use io::sink::{ShardInfo, SinkConfig, SinkFormat, SinkTarget};
pub use record::{Chunk, Document, Reject, Synthetic, ToBatch};
pub use stages::chunk::{ChunkConfig, ChunkDocs, Chunker};
pub use stages::context::StageContext;
pub use stages::dedup::exact::{Dedup, DedupConfig};
pub use stages::mix::{Mix, MixConfig, MixEvent, MixRow, MixShard, MixStageConfig, MixSummary, MixTarget, Mixture};
pub use stages::sink::SinkShards;
