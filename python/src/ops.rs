//! wrapflow's operators over Arrow: its SQL functions (through DataFusion, as in a plan) and its
//! chunker. Tables come in and go out through Arrow's C stream interface, so columns that pass
//! through are the caller's buffers, never copies.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use pyo3::prelude::*;
use pyo3_arrow::PyTable;
use pyo3_arrow::input::AnyRecordBatch;
use wrapflow_operators::record::{Chunk, Document, Reject, ToBatch};
use wrapflow_operators::sql::readers::{generated_id, text_problem};
use wrapflow_operators::stages::dedup::exact::dedup_key;
use wrapflow_operators::{ChunkConfig, Chunker};

use wrapflow::job::Fault;

use crate::errors::{Kind, to_py};

/// One runtime for every call from Python, as many threads as cores.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `batches` as `n` partitions of consecutive rows (slices share the buffers).
fn partitions(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let per = rows.div_ceil(n.max(1)).max(1);
    let mut out = vec![vec![]];
    let mut filled = 0;
    for b in batches {
        let mut at = 0;
        while at < b.num_rows() {
            if filled == per {
                out.push(vec![]);
                filled = 0;
            }
            let take = (per - filled).min(b.num_rows() - at);
            out.last_mut().expect("one partition").push(b.slice(at, take));
            at += take;
            filled += take;
        }
    }
    out
}

/// Runs `query` over `tables` (name → Arrow table) with wrapflow's SQL functions registered,
/// `token_count` counting with `tokenizer`. Rows keep their order through projections and
/// filters: each core takes a run of consecutive rows and the results are joined in order.
#[pyfunction]
#[pyo3(signature = (query, tables, tokenizer=None))]
fn sql(
    py: Python<'_>,
    query: &str,
    tables: Vec<(String, AnyRecordBatch)>,
    tokenizer: Option<String>,
) -> PyResult<Py<PyAny>> {
    let tables =
        tables.into_iter().map(|(name, t)| Ok((name, t.into_table()?.into_inner()))).collect::<PyResult<Vec<_>>>()?;
    let (batches, schema) = py
        .detach(|| -> anyhow::Result<_> {
            let tok = match tokenizer {
                Some(p) => Some(Arc::new(
                    wrapflow_operators::stages::chunk::load_tokenizer(p.as_ref())
                        .map_err(|e| wrapflow::job::tag(Fault::Model, e))?,
                )),
                None => None,
            };
            let n = cores();
            let mut config = SessionConfig::new().with_target_partitions(n);
            config.options_mut().optimizer.enable_round_robin_repartition = false;
            let ctx = SessionContext::new_with_config(config);
            wrapflow_operators::sql::udf::register_all(&ctx, tok);
            for (name, (batches, schema)) in tables {
                ctx.register_table(&name, Arc::new(MemTable::try_new(schema, partitions(batches, n))?))?;
            }
            runtime().block_on(async {
                let df = ctx.sql(query).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                let parts = df.collect_partitioned().await?;
                Ok((parts.into_iter().flatten().filter(|b| b.num_rows() > 0).collect::<Vec<_>>(), schema))
            })
        })
        .map_err(|e| to_py(e, Kind::Plan))?;
    Ok(PyTable::try_new(batches, schema)?.into_pyarrow(py)?.unbind())
}

/// The names of wrapflow's SQL functions.
#[pyfunction]
fn functions() -> Vec<String> {
    wrapflow_operators::sql::udf::all(None).iter().map(|f| f.name().to_string()).collect()
}

/// The chunk stage over Arrow: documents in, the chunks a run writes to `chunks/` out.
#[pyclass(name = "_Chunker", module = "wrapflow._wrapflow", frozen)]
struct PyChunker {
    chunker: Chunker,
}

#[pymethods]
impl PyChunker {
    #[new]
    #[pyo3(signature = (tokenizer, max_tokens=ChunkConfig::default().max_tokens, min_fill=ChunkConfig::default().min_fill))]
    fn new(tokenizer: String, max_tokens: usize, min_fill: f64) -> PyResult<Self> {
        let cfg = ChunkConfig { max_tokens, min_fill, tokenizer: Some(tokenizer) };
        let chunker = Chunker::from_config(&cfg).map_err(|e| to_py(e, Kind::Model))?;
        Ok(PyChunker { chunker })
    }

    /// Chunks of every document of `data` and the rows that are no documents, as two tables.
    #[pyo3(signature = (data, text="text", id="id"))]
    fn split(&self, py: Python<'_>, data: AnyRecordBatch, text: &str, id: &str) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let (batches, _) = data.into_table()?.into_inner();
        let (chunks, rejects) = py
            .detach(|| -> anyhow::Result<_> {
                let mut docs = vec![];
                let mut rejects = vec![];
                let mut row = 0;
                for b in &batches {
                    docs.extend(documents(b, text, id, &mut row, &mut rejects)?);
                }
                // Each core chunks a run of consecutive documents; the runs are joined in order.
                let per = docs.len().div_ceil(cores()).max(1);
                let parts = std::thread::scope(|s| {
                    let chunker = &self.chunker;
                    let handles: Vec<_> = docs
                        .chunks(per)
                        .map(|run| {
                            s.spawn(move || -> anyhow::Result<Vec<Chunk>> {
                                let mut out = vec![];
                                for d in run {
                                    out.extend(chunker.chunk_doc(d)?);
                                }
                                Ok(out)
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().expect("a chunking thread panicked")).collect::<Vec<_>>()
                });
                let mut chunks = vec![];
                for part in parts {
                    chunks.extend(part?);
                }
                Ok((Chunk::to_batch(&chunks)?, Reject::to_batch(&rejects)?))
            })
            .map_err(|e| to_py(e, Kind::Input))?;
        let table = |b: RecordBatch| -> PyResult<Py<PyAny>> {
            let schema = b.schema();
            Ok(PyTable::try_new(vec![b], schema)?.into_pyarrow(py)?.unbind())
        };
        Ok((table(chunks)?, table(rejects)?))
    }
}

/// The documents of a batch, as a plan's reader makes them: a row without usable text is a
/// reject with the reader's reason; a missing id is the reader's generated one. `source_file`
/// and `source_line` columns are used when present; else rows are numbered from 1 across calls'
/// batches (`row`).
fn documents(
    b: &RecordBatch,
    text: &str,
    id: &str,
    row: &mut u64,
    rejects: &mut Vec<Reject>,
) -> anyhow::Result<Vec<Document>> {
    let texts = strings(b, text)?.ok_or_else(|| anyhow::anyhow!("no text column {text:?}"))?;
    let ids = strings(b, id)?;
    let files = strings(b, "source_file")?;
    let lines = b.column_by_name("source_line").map(|c| arrow::compute::cast(c, &DataType::UInt64)).transpose()?;
    let lines = lines.as_ref().map(|c| c.as_primitive::<arrow::datatypes::UInt64Type>());
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        *row += 1;
        let file = files.as_ref().and_then(|f| f[i]).unwrap_or("");
        let line = lines.filter(|l| !l.is_null(i)).map_or(*row, |l| l.value(i));
        let Some(t) = texts[i] else {
            rejects.push(Reject::read(file, line, format!("text column {text:?} is null"), &[]));
            continue;
        };
        if let Some(why) = text_problem(t) {
            rejects.push(Reject::read(file, line, why, t.as_bytes()));
            continue;
        }
        let doc_id = ids.as_ref().and_then(|v| v[i]).filter(|s| !s.is_empty());
        out.push(Document {
            id: doc_id.map_or_else(|| generated_id(file, line), str::to_string),
            text: t.to_string(),
            source_file: file.to_string(),
            source_line: line,
            dedup_key: 0,
        });
    }
    Ok(out)
}

/// A string column's values, whichever of Arrow's three string layouts it has.
pub(crate) fn strings<'a>(b: &'a RecordBatch, name: &str) -> anyhow::Result<Option<Vec<Option<&'a str>>>> {
    let Some(c) = b.column_by_name(name) else { return Ok(None) };
    let c: &'a ArrayRef = c;
    Ok(Some(match c.data_type() {
        DataType::Utf8 => c.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => c.as_string::<i64>().iter().collect(),
        DataType::Utf8View => c.as_string_view().iter().collect(),
        other => anyhow::bail!("column {name:?} holds {other}, not strings"),
    }))
}

/// Exact dedup over a stream of batches: the first row of each key value is kept, across calls.
#[pyclass(name = "_Dedup", module = "wrapflow._wrapflow", frozen)]
struct PyDedup {
    key: String,
    seen: std::sync::Mutex<std::collections::HashSet<u128>>,
}

#[pymethods]
impl PyDedup {
    #[new]
    fn new(key: String) -> Self {
        PyDedup { key, seen: Default::default() }
    }

    /// `(kept, duplicates)` of `data`: a row is a duplicate when its key column holds a value
    /// that an earlier row (of this call or an earlier one) held; a NULL key is never one.
    fn split(&self, py: Python<'_>, data: AnyRecordBatch) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let (batches, schema) = data.into_table()?.into_inner();
        let (kept, dups) = py
            .detach(|| -> anyhow::Result<_> {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let (mut kept, mut dups) = (vec![], vec![]);
                for b in &batches {
                    let values =
                        strings(b, &self.key)?.ok_or_else(|| anyhow::anyhow!("no key column {:?}", self.key))?;
                    // A NULL key is unique to its row, as in a plan: kept, never remembered.
                    let new: arrow::array::BooleanArray =
                        values.iter().map(|v| Some(v.is_none() || seen.insert(dedup_key(*v, "", 0)))).collect();
                    kept.push(arrow::compute::filter_record_batch(b, &new)?);
                    dups.push(arrow::compute::filter_record_batch(b, &arrow::compute::not(&new)?)?);
                }
                Ok((kept, dups))
            })
            .map_err(|e| to_py(e, Kind::Input))?;
        let table = |t: Vec<RecordBatch>| -> PyResult<Py<PyAny>> {
            Ok(PyTable::try_new(t, schema.clone())?.into_pyarrow(py)?.unbind())
        };
        Ok((table(kept)?, table(dups)?))
    }

    /// Distinct keys seen so far.
    #[getter]
    fn seen(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sql, m)?)?;
    m.add_function(wrap_pyfunction!(functions, m)?)?;
    m.add_class::<PyChunker>()?;
    m.add_class::<PyDedup>()
}
