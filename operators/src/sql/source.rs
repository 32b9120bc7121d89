//! **Source** stage: `CREATE EXTERNAL TABLE name [(extra columns)] STORED AS JSONL | PARQUET |
//! TEXT LOCATION 'url' [OPTIONS (...)]` in DataFusion, read by wrapflow's own readers.
//!
//! Out comes a table with `id`, `text`, the declared extra columns, `source_file` and
//! `source_line`. Records that cannot be used never fail the query: they go to
//! [`SourceStats::take_rejects`] with file, line and reason, and are counted. Each worker's
//! session reads only its share (`unit index % peers == worker index`, over the sorted listing;
//! a unit is a file, or for Parquet a row group, so one big Parquet file still spreads over all
//! workers), and per-worker queries together read every record exactly once.
//!
//! Options: `text_column` (default `text`), `id_column` (`id`; generated from file and line when
//! absent), `max_record_bytes` (16 MiB), `batch_rows` (the session's batch size: 1024, or 32 in plans that rephrase), `compression` (`gzip`, `zstd`,
//! `none`; default by file extension), and store settings (`aws_endpoint`, ...: see
//! [`crate::io::store`]).

use std::collections::BTreeMap;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::CreateExternalTable;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
// Deprecated in parquet 59 in favour of a hand-written AsyncFileReader; it still does exactly
// what a sequential whole-file read needs.
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::io::store::{Location, StoreRegistry, is_store_option};
use crate::record::Reject;
pub use crate::sql::listing::{Format, Skipped, list_inputs, list_objects, list_with_skips, object_name};
use crate::sql::readers::{self, Layout, RecordSink};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SourceOptions {
    text_column: String,
    id_column: String,
    max_record_bytes: usize,
    /// Rows per batch; the session's batch size when absent.
    batch_rows: Option<usize>,
    compression: Option<String>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            text_column: "text".into(),
            id_column: "id".into(),
            max_record_bytes: 16 << 20,
            batch_rows: None,
            compression: None,
        }
    }
}

/// One input object.
#[derive(Clone, Debug, Serialize)]
pub struct InputFile {
    pub path: String,
    pub bytes: u64,
}

/// Counters of one source in one worker, shared with whoever drives the query.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Rows handed to the query.
    pub rows: AtomicU64,
    pub rejected: AtomicU64,
    /// Input bytes read so far (compressed size) and in total for this worker's share.
    pub bytes_read: AtomicU64,
    pub bytes_total: AtomicU64,
    pub files: Mutex<Vec<InputFile>>,
    rejects: Mutex<Vec<Reject>>,
}

impl SourceStats {
    /// Rejects recorded since the last call.
    pub fn take_rejects(&self) -> Vec<Reject> {
        std::mem::take(&mut *self.rejects.lock().unwrap())
    }
}

/// A source created by a plan, with its counters.
#[derive(Debug)]
pub struct SourceHandle {
    pub table: String,
    pub location: String,
    /// Where its objects are, to list them.
    pub store: Location,
    pub format: Format,
    pub stats: Arc<SourceStats>,
    /// The objects the next execution of the query reads (all workers get the same list and each
    /// reads its share); `None`: list the location, as a one-off run does.
    pub segment: Arc<Mutex<Option<Vec<ObjectMeta>>>>,
}

/// `TableProviderFactory` for `STORED AS JSONL | JSON | PARQUET | TEXT`.
#[derive(Debug)]
pub struct SourceFactory {
    registry: Arc<StoreRegistry>,
    worker: usize,
    peers: usize,
    created: Mutex<Vec<Arc<SourceHandle>>>,
}

impl SourceFactory {
    /// A factory for worker `worker` of `peers`.
    pub fn new(registry: Arc<StoreRegistry>, worker: usize, peers: usize) -> Arc<Self> {
        Arc::new(SourceFactory { registry, worker, peers, created: Mutex::new(vec![]) })
    }

    /// Sources created so far.
    pub fn sources(&self) -> Vec<Arc<SourceHandle>> {
        self.created.lock().unwrap().clone()
    }

    /// Registers this factory for all wrapflow formats in a session.
    pub fn register(self: &Arc<Self>, ctx: &datafusion::prelude::SessionContext) {
        let state = ctx.state_ref();
        let mut state = state.write();
        for name in ["JSONL", "JSON", "NDJSON", "PARQUET", "TEXT"] {
            state.table_factories_mut().insert(name.into(), self.clone());
        }
    }
}

fn plan_err(msg: String) -> DataFusionError {
    DataFusionError::Plan(msg)
}

#[async_trait]
impl TableProviderFactory for SourceFactory {
    async fn create(&self, state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let format = match cmd.file_type.to_uppercase().as_str() {
            "JSONL" | "JSON" | "NDJSON" => Format::Jsonl,
            "PARQUET" => Format::Parquet,
            "TEXT" => Format::Text,
            other => return Err(plan_err(format!("unsupported format {other}"))),
        };
        if cmd.locations.len() != 1 {
            return Err(plan_err("a wrapflow source takes exactly one LOCATION (a file or a prefix)".into()));
        }
        let mut store_opts = BTreeMap::new();
        let mut opts = serde_json::Map::new();
        for (k, v) in &cmd.options {
            let k = k.strip_prefix("format.").unwrap_or(k);
            if is_store_option(k) {
                store_opts.insert(k.to_string(), v.clone());
            } else {
                let val = v.parse::<u64>().map(serde_json::Value::from).unwrap_or_else(|_| v.clone().into());
                opts.insert(k.to_string(), val);
            }
        }
        let opts: SourceOptions = serde_json::from_value(opts.into())
            .map_err(|e| plan_err(format!("table {}: bad OPTIONS: {e}", cmd.name)))?;
        let extras = cmd
            .schema
            .fields()
            .iter()
            .filter(|f| {
                ![readers::ID, readers::TEXT, readers::SOURCE_FILE, readers::SOURCE_LINE].contains(&f.name().as_str())
            })
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let mut layout = Layout::new(&opts.text_column, &opts.id_column, extras)
            .map_err(|e| plan_err(format!("table {}: {e}", cmd.name)))?;
        layout.max_record_bytes = opts.max_record_bytes;
        // A batch is the dataflow's unit of backpressure: the session's size unless the table says.
        layout.batch_rows = opts.batch_rows.unwrap_or(state.config().batch_size()).max(1);
        let location = self
            .registry
            .resolve(&cmd.locations[0], &store_opts)
            .map_err(|e| plan_err(format!("table {}: {e:#}", cmd.name)))?;
        let stats = Arc::new(SourceStats::default());
        let segment = Arc::new(Mutex::new(None));
        self.created.lock().unwrap().push(Arc::new(SourceHandle {
            table: cmd.name.to_string(),
            location: location.url.clone(),
            store: location.clone(),
            format,
            stats: stats.clone(),
            segment: segment.clone(),
        }));
        let part = ReadJob {
            location,
            format,
            compression: opts.compression,
            layout,
            worker: self.worker,
            peers: self.peers,
            stats,
            segment,
        };
        let schema = part.layout.schema.clone();
        Ok(Arc::new(StreamingTable::try_new(schema, vec![Arc::new(part)])?))
    }
}

/// One worker's share of a source; each `execute` reads it anew.
#[derive(Clone, Debug)]
struct ReadJob {
    location: Location,
    format: Format,
    compression: Option<String>,
    layout: Layout,
    worker: usize,
    peers: usize,
    stats: Arc<SourceStats>,
    segment: Arc<Mutex<Option<Vec<ObjectMeta>>>>,
}

impl PartitionStream for ReadJob {
    fn schema(&self) -> &SchemaRef {
        &self.layout.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(2);
        let job = self.clone();
        tokio::spawn(async move {
            if let Err(e) = job.run(tx.clone()).await {
                let _ = tx.send(Err(DataFusionError::External(e.into()))).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(self.layout.schema.clone(), stream))
    }
}

/// Sends batches into the query's channel and rejects into the stats, counting both.
struct ChannelSink {
    tx: mpsc::Sender<Result<RecordBatch>>,
    stats: Arc<SourceStats>,
}

impl RecordSink for ChannelSink {
    fn batch(&mut self, batch: RecordBatch) -> bool {
        let rows = batch.num_rows() as u64;
        let sent = self.tx.blocking_send(Ok(batch)).is_ok();
        if sent {
            self.stats.rows.fetch_add(rows, Ordering::Relaxed);
        }
        sent
    }
    fn reject(&mut self, reject: Reject) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        self.stats.rejects.lock().unwrap().push(reject);
    }
}

/// A row group of a Parquet file assigned to this worker.
#[derive(Clone, Copy, Debug)]
struct RowGroup {
    index: usize,
    /// Rows before it in the file.
    first_row: u64,
    bytes: u64,
}

impl ReadJob {
    async fn run(self, tx: mpsc::Sender<Result<RecordBatch>>) -> anyhow::Result<()> {
        let given = self.segment.lock().unwrap().clone();
        let metas = match given {
            Some(m) => m,
            None => list_inputs(&self.location, self.format).await?,
        };
        // Parquet is split by row group across all workers (a single big file still spreads);
        // other formats by file. Either way every worker derives the same global list of units
        // and takes every `peers`-th one, so there is no overlap and no gap.
        let mine: Vec<(ObjectMeta, Option<Vec<RowGroup>>)> = if self.format == Format::Parquet {
            self.parquet_units(metas).await
        } else {
            metas
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % self.peers == self.worker)
                .map(|(_, m)| (m, None))
                .collect()
        };
        let share = |(m, rgs): &(ObjectMeta, Option<Vec<RowGroup>>)| match rgs {
            Some(r) => r.iter().map(|g| g.bytes).sum(),
            None => m.size,
        };
        self.stats.bytes_total.fetch_add(mine.iter().map(share).sum(), Ordering::Relaxed);
        let job = Arc::new(self);
        for (meta, groups) in mine {
            let file = object_name(&job.location, &meta.location);
            job.stats.files.lock().unwrap().push(InputFile { path: file.clone(), bytes: meta.size });
            let mut sink = ChannelSink { tx: tx.clone(), stats: job.stats.clone() };
            let result = match job.format {
                Format::Parquet => job.read_parquet(&meta, groups, &file, &mut sink).await,
                _ => {
                    let j = job.clone();
                    let path = meta.location.clone();
                    let bytes = j.fetch(&path).await;
                    tokio::task::spawn_blocking(move || j.read_lines(bytes, &path, &file, &mut sink))
                        .await
                        .map_err(|e| anyhow::anyhow!("reader task failed: {e}"))?
                }
            };
            if let Err(e) = result {
                let mut sink = ChannelSink { tx: tx.clone(), stats: job.stats.clone() };
                let file = job.location.relative(&meta.location);
                sink.reject(Reject::read(&file, 0, format!("unreadable file: {e:#}"), &[]));
            }
            if tx.is_closed() {
                break;
            }
        }
        Ok(())
    }

    /// Starts the download of an object as a byte stream.
    async fn fetch(&self, path: &Path) -> object_store::Result<object_store::GetResult> {
        self.location.store.get(path).await
    }

    /// Reads a JSONL or text object on a blocking thread, decompressing as needed.
    fn read_lines(
        &self,
        got: object_store::Result<object_store::GetResult>,
        path: &Path,
        file: &str,
        sink: &mut ChannelSink,
    ) -> anyhow::Result<()> {
        let stats = self.stats.clone();
        let stream = got?.into_stream().map_ok(move |b| {
            stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
            b
        });
        let reader = tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
        let raw = tokio_util::io::SyncIoBridge::new(reader);
        let name = path.filename().unwrap_or("").to_ascii_lowercase();
        let compression = self.compression.clone().unwrap_or_else(|| {
            if name.ends_with(".gz") {
                "gzip".into()
            } else if name.ends_with(".zst") || name.ends_with(".zstd") {
                "zstd".into()
            } else {
                "none".into()
            }
        });
        let mut input: Box<dyn std::io::BufRead> = match compression.as_str() {
            "gzip" => Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(raw))),
            "zstd" => Box::new(BufReader::with_capacity(1 << 20, zstd::Decoder::new(raw)?)),
            "none" => Box::new(BufReader::with_capacity(1 << 20, raw)),
            other => anyhow::bail!("unknown compression {other:?} (gzip, zstd or none)"),
        };
        match self.format {
            Format::Text => {
                let mut bytes = Vec::new();
                let limit = self.layout.max_record_bytes as u64 + 1;
                std::io::Read::read_to_end(&mut std::io::Read::take(&mut input, limit), &mut bytes)?;
                readers::read_text(&bytes, file, &self.layout, sink);
            }
            _ => readers::read_jsonl(&mut *input, file, &self.layout, sink),
        }
        Ok(())
    }

    #[allow(deprecated)]
    /// This worker's Parquet row groups: every footer is read, row groups are numbered across
    /// all files in order, and unit `i` goes to worker `i % peers`. A file whose footer cannot be
    /// read stays one unit (by file index), so exactly one worker reports it.
    async fn parquet_units(&self, metas: Vec<ObjectMeta>) -> Vec<(ObjectMeta, Option<Vec<RowGroup>>)> {
        let mut out = Vec::new();
        let mut unit = 0usize;
        for (i, meta) in metas.into_iter().enumerate() {
            let mut reader =
                ParquetObjectReader::new(self.location.store.clone(), meta.location.clone()).with_file_size(meta.size);
            match ArrowReaderMetadata::load_async(&mut reader, Default::default()).await {
                Ok(md) => {
                    let mut first_row = 0u64;
                    let mut mine = Vec::new();
                    for (g, rg) in md.metadata().row_groups().iter().enumerate() {
                        if unit % self.peers == self.worker {
                            mine.push(RowGroup { index: g, first_row, bytes: rg.compressed_size().max(0) as u64 });
                        }
                        unit += 1;
                        first_row += rg.num_rows().max(0) as u64;
                    }
                    if !mine.is_empty() {
                        out.push((meta, Some(mine)));
                    }
                }
                Err(_) if i % self.peers == self.worker => out.push((meta, None)),
                Err(_) => {}
            }
        }
        out
    }

    #[allow(deprecated)]
    async fn read_parquet(
        &self,
        meta: &ObjectMeta,
        groups: Option<Vec<RowGroup>>,
        file: &str,
        sink: &mut ChannelSink,
    ) -> anyhow::Result<()> {
        let mut reader =
            ParquetObjectReader::new(self.location.store.clone(), meta.location.clone()).with_file_size(meta.size);
        // The footer once; then one stream per row group, its rows numbered from the group's first
        // row so that `source_line` is the row's place in the file whichever worker reads it.
        // Without a list (an unreadable footer) this fails here and the file is rejected by name.
        let md = ArrowReaderMetadata::load_async(&mut reader, Default::default()).await?;
        let groups = groups.unwrap_or_else(|| {
            let mut first_row = 0;
            (md.metadata().row_groups().iter().enumerate())
                .map(|(index, rg)| {
                    let g = RowGroup { index, first_row, bytes: rg.compressed_size().max(0) as u64 };
                    first_row += rg.num_rows().max(0) as u64;
                    g
                })
                .collect()
        });
        for g in groups {
            let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), md.clone())
                .with_batch_size(self.layout.batch_rows)
                .with_row_groups(vec![g.index])
                .build()?;
            let mut row = g.first_row;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| anyhow::anyhow!("decode error after row {row}: {e}"))?;
                let n = batch.num_rows() as u64;
                // Sending may block on a full channel: step off the async threads for it.
                let keep_going =
                    tokio::task::block_in_place(|| readers::parquet_rows(&batch, row, file, &self.layout, sink));
                row += n;
                if !keep_going {
                    return Ok(());
                }
            }
            self.stats.bytes_read.fetch_add(g.bytes, Ordering::Relaxed);
        }
        Ok(())
    }
}
