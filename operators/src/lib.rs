//! # wrapflow-operators
//!
//! The building blocks of a wrapflow pipeline, usable on their own inside any timely dataflow or
//! DataFusion session:
//!
//! | module | what it gives |
//! |---|---|
//! | [`source`] | a DataFusion `TableProviderFactory` (`STORED AS JSONL / PARQUET / TEXT`) whose reader turns bad records into [`record::Reject`]s instead of failing the query |
//! | [`udf`] | SQL functions for pretraining-data filtering: `token_count`, the C4 and Gopher heuristics, `content_hash` |
//! | [`dedup`] | the [`dedup::Dedup`] operator: exact, global dedup by key (keys travel, documents stay) |
//! | [`keyvote`] | global "seen before?" decisions by key with documents staying on their worker (the core of both dedups) |
//! | [`neardup`] | the [`neardup::NearDedup`] operator: MinHash + LSH near-duplicate dedup, global across workers |
//! | [`clusters`] | near-duplicate clusters as connected components on differential dataflow (the first document per cluster is kept) |
//! | [`checkpoint`] | checkpoint hooks: operators register their state, the driver saves it at quiescent cuts and loads it on resume |
//! | [`chunk`] | the [`chunk::ChunkDocs`] operator: split documents into chunks of at most N tokens |
//! | [`sink`] | the [`sink::SinkShards`] operator: atomic Parquet / JSONL shards in object storage |
//! | [`store`] | object-store URLs (`file://`, bare paths, `s3://`, `gs://`, `az://`, `memory://`) |
//! | [`model`] | GGUF reading and the import of llama models into ONNX (fp32 or 4-bit), the tiny test model |
//! | [`engine`] | ONNX Runtime setup and batched generation with KV cache and continuous batching |
//! | [`styles`], [`fanout`] | WRAP and Nemotron-CC styles; the [`fanout::FanOut`] operator (chunk × styles, seeded rates) |
//! | [`journal`] | a durable memo of an expensive stage's results between checkpoints ([`journal::Journaled`], [`journal::Memo`]) |
//! | [`rephrase`] | the [`rephrase::Rephrase`] operator: style tasks through a model with continuous batching, in time slices |
//! | [`mix`] | the [`mix::Mix`] operator: token-exact real:synthetic, style and source ratios, curriculum stages, several mixtures per pass, Parquet / JSONL / token shards ([`mixture`] its settings, [`mixer`] its scheduling core, [`mixout`] its file formats) |
//! | [`tokens`] | token shards for training: a flat binary of ids with a document index, writer and reader |
//! | [`gates`] | quality gates for rephrasings, each with its score; the [`gates::Gate`] operator adds the meaning gate (embedding cosine) |
//!
//! Every operator is an extension trait on a timely [`timely::dataflow::StreamVec`], configured by
//! a serde struct, in the style of timely's own operators.

// Stages split streams with `Result<Row, Reject>` records (`ok_err`): both sides are full rows by
// design, and boxing the reject would cost an allocation per record.
#![allow(clippy::result_large_err)]

pub mod checkpoint;
pub mod chunk;
pub mod clusters;
pub mod dedup;
pub mod engine;
pub mod fanout;
pub mod gates;
pub mod heuristics;
pub mod journal;
pub mod keyvote;
pub mod listing;
pub mod mix;
pub mod mixer;
pub mod mixout;
pub mod mixrow;
pub mod mixsnap;
pub mod mixture;
pub mod model;
pub mod neardup;
pub mod readers;
pub mod record;
pub mod rephrase;
pub mod sink;
pub mod source;
pub mod store;
pub mod styles;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tokens;
pub mod udf;

pub use chunk::{ChunkConfig, ChunkDocs, Chunker};
pub use dedup::{Dedup, DedupConfig};
pub use mix::{Mix, MixConfig, MixEvent, MixRow, MixShard, MixSummary, MixTarget, Mixture};
pub use record::{Chunk, Document, Reject, Synthetic, ToBatch};
pub use sink::{ShardInfo, SinkConfig, SinkFormat, SinkShards, SinkTarget};
