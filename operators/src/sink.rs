//! **Sink** stage: rows in, shards in object storage out, and a [`ShardInfo`] per shard.
//!
//! Rows are buffered into a shard of `shard_rows` rows or `shard_bytes` bytes, encoded on the
//! worker (Parquet with zstd, or JSON Lines) and uploaded by the async runtime with at most
//! `max_inflight` uploads per worker, which bounds memory. Each shard is one `put`, which object
//! stores (and the local file system, by rename) make visible only once complete: a reader never
//! sees a partial shard.

use std::collections::VecDeque;
use std::marker::PhantomData;

use arrow::array::RecordBatch;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::record::ToBatch;
use crate::store::Location;

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
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig { format: SinkFormat::Parquet, shard_rows: 100_000, shard_bytes: 256 << 20, max_inflight: 2 }
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

struct ShardWriter<D> {
    target: SinkTarget,
    config: SinkConfig,
    rows: Vec<D>,
    bytes: usize,
    seq: usize,
    inflight: VecDeque<JoinHandle<Result<ShardInfo, String>>>,
    _d: PhantomData<D>,
}

impl<D: ToBatch> ShardWriter<D> {
    fn push(&mut self, row: D, done: &mut Vec<Result<ShardInfo, String>>) {
        self.bytes += row.approx_bytes();
        self.rows.push(row);
        if self.rows.len() >= self.config.shard_rows || self.bytes >= self.config.shard_bytes {
            self.close_shard(done);
        }
    }

    fn close_shard(&mut self, done: &mut Vec<Result<ShardInfo, String>>) {
        if self.rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        let name = format!(
            "{}/part-{:05}-{:06}.{}",
            self.target.dir,
            self.target.worker,
            self.seq,
            self.config.format.extension()
        );
        self.seq += 1;
        let tokens = rows.iter().map(ToBatch::tokens).sum();
        let n = rows.len() as u64;
        let path = self.target.location.child(&name);
        let store = self.target.location.store.clone();
        let encoded = encode(&rows, self.config.format);
        drop(rows);
        let url = self.target.location.url.clone();
        self.inflight.push_back(self.target.runtime.spawn(async move {
            let data = encoded.map_err(|e| format!("encoding {name}: {e:#}"))?;
            let bytes = data.len() as u64;
            store.put(&path, PutPayload::from(data)).await.map_err(|e| format!("writing {url}/{name}: {e}"))?;
            Ok(ShardInfo { path: name, rows: n, bytes, tokens })
        }));
        while self.inflight.len() > self.config.max_inflight.max(1) {
            self.wait_oldest(done);
        }
    }

    fn wait_oldest(&mut self, done: &mut Vec<Result<ShardInfo, String>>) {
        if let Some(h) = self.inflight.pop_front() {
            let r = self.target.runtime.block_on(h).unwrap_or_else(|e| Err(format!("upload task failed: {e}")));
            done.push(r);
        }
    }

    fn reap_finished(&mut self, done: &mut Vec<Result<ShardInfo, String>>) {
        while self.inflight.front().is_some_and(|h| h.is_finished()) {
            self.wait_oldest(done);
        }
    }
}

/// Extension trait: write a stream of rows as shards.
pub trait SinkShards<'scope, T: Timestamp, D> {
    /// Writes the rows; the output carries one `Ok(ShardInfo)` per shard written, or `Err` with
    /// the message of a failed write (the caller decides to fail the run).
    fn sink_shards(self, target: SinkTarget, config: &SinkConfig) -> StreamVec<'scope, T, Result<ShardInfo, String>>;
}

impl<'scope, T: Timestamp, D: ToBatch + Clone + 'static> SinkShards<'scope, T, D> for StreamVec<'scope, T, D> {
    fn sink_shards(self, target: SinkTarget, config: &SinkConfig) -> StreamVec<'scope, T, Result<ShardInfo, String>> {
        let mut w = ShardWriter::<D> {
            target,
            config: config.clone(),
            rows: Vec::new(),
            bytes: 0,
            seq: 0,
            inflight: VecDeque::new(),
            _d: PhantomData,
        };
        self.unary_frontier(Pipeline, "Sink", move |cap, _| {
            let mut cap = Some(cap);
            let mut done = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|_, data| {
                    for batch in data {
                        for row in batch.drain(..) {
                            w.push(row, &mut done);
                        }
                    }
                });
                w.reap_finished(&mut done);
                if frontier.is_empty() {
                    w.close_shard(&mut done);
                    while !w.inflight.is_empty() {
                        w.wait_oldest(&mut done);
                    }
                }
                if let Some(c) = cap.as_mut() {
                    if !done.is_empty() {
                        output.session(&*c).give_iterator(done.drain(..));
                    }
                    match frontier.frontier().first() {
                        None => cap = None,
                        Some(t) if frontier.frontier().len() == 1 && c.time().less_equal(t) => c.downgrade(t),
                        Some(_) => {}
                    }
                }
            }
        })
        .container::<Vec<Result<ShardInfo, String>>>()
    }
}
