//! Shards in object storage: their formats, settings and encoding; the sink stage that writes them
//! is `stages::sink`.
//!
//! Rows are buffered into a shard of `shard_rows` rows or `shard_bytes` bytes, encoded on the
//! worker (Parquet with zstd, or JSON Lines) and uploaded by the async runtime with at most
//! `max_inflight` uploads per worker, which bounds memory. Each shard is one `put`, which object
//! stores (and the local file system, by rename) make visible only once complete: a reader never
//! sees a partial shard.

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::io::store::Location;
use crate::record::ToBatch;

/// Shard file formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    #[default]
    Parquet,
    Jsonl,
}

impl SinkFormat {
    pub fn extension(self) -> &'static str {
        match self {
            SinkFormat::Parquet => "parquet",
            SinkFormat::Jsonl => "jsonl",
        }
    }
}

/// Settings of the sink stage (`SINK 'url' WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub format: SinkFormat,
    /// A shard is closed at this many rows...
    pub shard_rows: usize,
    /// ...or at about this many bytes of row data, whichever comes first.
    pub shard_bytes: usize,
    /// Uploads in flight per worker before the worker waits for one to finish.
    pub max_inflight: usize,
    /// The folder under the output that the shards go to (set by the job, not an option).
    #[serde(skip)]
    pub dir: String,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            format: SinkFormat::Parquet,
            shard_rows: 100_000,
            shard_bytes: 256 << 20,
            max_inflight: 2,
            dir: String::new(),
        }
    }
}

/// Where one worker writes: `<location>/<dir>/part-<worker>-<seq>.<ext>`.
#[derive(Clone, Debug)]
pub struct SinkTarget {
    pub location: Location,
    pub dir: String,
    pub worker: usize,
    pub runtime: Handle,
}

/// A written shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Path relative to the sink location.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub tokens: u64,
}

/// Encodes rows in the chosen format.
pub fn encode<D: ToBatch>(rows: &[D], format: SinkFormat) -> anyhow::Result<Vec<u8>> {
    const SLICE: usize = 8192;
    encode_batches(D::schema(), rows.chunks(SLICE).map(D::to_batch), format)
}

/// Encodes batches of one schema in the chosen format.
pub fn encode_batches(
    schema: arrow::datatypes::SchemaRef,
    batches: impl Iterator<Item = arrow::error::Result<RecordBatch>>,
    format: SinkFormat,
) -> anyhow::Result<Vec<u8>> {
    match format {
        SinkFormat::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                .set_max_row_group_row_count(Some(64 * 1024))
                .build();
            let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
            for b in batches {
                w.write(&b?)?;
            }
            Ok(w.into_inner()?)
        }
        SinkFormat::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            for b in batches {
                let b: RecordBatch = b?;
                w.write(&b)?;
            }
            w.finish()?;
            Ok(w.into_inner())
        }
    }
}
