//! `_Rephraser`: a plan's rephrase stage and gates over Arrow batches of chunks. The models load
//! once, in a [`WorkerThread`] (a backend is not `Send`); each call builds a dataflow there for
//! its batch.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, UInt64Type};
use pyo3::prelude::*;
use pyo3_arrow::PyTable;
use pyo3_arrow::input::AnyRecordBatch;
use tokenizers::Tokenizer;
use wrapflow::job::wrap::{load_models, rephrase_batch};
use wrapflow_operators::Chunker;
use wrapflow_operators::engine::SharedBackend;
use wrapflow_operators::record::{Chunk, Reject, Synthetic, ToBatch};
use wrapflow_operators::stages::context::StageContext;
use wrapflow_operators::state::metrics::Metrics;

use crate::errors::{Kind, to_py};
use crate::ops::{runtime, strings};
use crate::plan::PyPlan;
use crate::worker::WorkerThread;

type Rows = (Vec<Synthetic>, Vec<Reject>);

#[pyclass(name = "_Rephraser", module = "wrapflow._wrapflow", frozen)]
pub struct PyRephraser {
    worker: WorkerThread<Vec<Chunk>, Rows>,
    /// The plan's tokenizer: it counts a chunk's tokens where the batch has no `n_tokens`.
    tokenizer: Arc<Tokenizer>,
}

#[pymethods]
impl PyRephraser {
    /// Loads `plan`'s models (or connects their endpoints), embedder and tokenizer.
    #[new]
    fn new(py: Python<'_>, plan: &Bound<'_, PyPlan>) -> PyResult<Self> {
        let plan = plan.get().plan.clone();
        if plan.rephrase.is_empty() {
            return Err(to_py(anyhow::anyhow!("the plan has no REPHRASE statement"), Kind::Plan));
        }
        // As a run checks them before it starts: model directories, and an embedder where a
        // style's gates need one (else those gates would pass every row unmeasured).
        wrapflow::job::run::check_models(&plan).map_err(|e| to_py(e.into(), Kind::Plan))?;
        let chunker = Chunker::from_config(&plan.chunk.0).map_err(|e| to_py(e, Kind::Model))?;
        let tokenizer = chunker.tokenizer().clone();
        let (tok, plan) = (tokenizer.clone(), Arc::new(plan));
        let serving = plan.clone();
        let start = move |_: &mut timely::worker::Worker| -> anyhow::Result<_> {
            let models = load_models(&plan, runtime().handle(), &Metrics::default(), 1)?;
            let models = models.ok_or_else(|| anyhow::anyhow!("the plan has no REPHRASE statement"))?;
            let ctx = StageContext::default()
                .with_tokenizer(tok)
                .with_embedder(models.embedder)
                .with_checkers(models.checkers);
            Ok((ctx, models.backends))
        };
        let serve = move |worker: &mut timely::worker::Worker,
                          (ctx, backends): &mut (StageContext, Vec<SharedBackend>),
                          chunks| { rephrase_batch(worker, &serving, ctx, backends, chunks) };
        let worker = WorkerThread::spawn(py, "wrapflow-rephraser", Kind::Model, start, serve)?;
        Ok(PyRephraser { worker, tokenizer })
    }

    /// `(synthetic, rejects)` of the chunks in `data`, as two Arrow tables with the schemas of a
    /// run's `synthetic/` and `rejects/`.
    fn split(&self, py: Python<'_>, data: AnyRecordBatch) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let (batches, _) = data.into_table()?.into_inner();
        let mut chunks = vec![];
        for b in &batches {
            chunks.extend(chunks_of(b, &self.tokenizer).map_err(|e| to_py(e, Kind::Input))?);
        }
        let (synthetic, rejects) = self.worker.call(py, chunks, Kind::Model)?;
        let table = |b: arrow::error::Result<RecordBatch>| -> PyResult<Py<PyAny>> {
            let b = b.map_err(|e| to_py(e.into(), Kind::Other))?;
            let schema = b.schema();
            Ok(PyTable::try_new(vec![b], schema)?.into_pyarrow(py)?.unbind())
        };
        Ok((table(Synthetic::to_batch(&synthetic))?, table(Reject::to_batch(&rejects))?))
    }

    /// Stops the model thread and frees the models (also when the object is collected).
    fn close(&self) {
        self.worker.close();
    }
}

/// The chunks of a batch with the chunker's columns: `text`, `doc_id` and `chunk_index` are
/// needed; `n_tokens` is counted with `tokenizer` where absent; `byte_start`, `byte_end`,
/// `source_file` and `source_line` are carried into the rows' lineage when present.
fn chunks_of(b: &RecordBatch, tokenizer: &Tokenizer) -> anyhow::Result<Vec<Chunk>> {
    let needed = |name: &str| anyhow::anyhow!("no column {name:?}: pass the chunker's output (Chunker)");
    let texts = strings(b, "text")?.ok_or_else(|| needed("text"))?;
    let docs = strings(b, "doc_id")?.ok_or_else(|| needed("doc_id"))?;
    let files = strings(b, "source_file")?;
    let number = |name: &str| -> anyhow::Result<Option<Arc<dyn Array>>> {
        b.column_by_name(name).map(|c| arrow::compute::cast(c, &DataType::UInt64)).transpose().map_err(Into::into)
    };
    let index = Some(number("chunk_index")?.ok_or_else(|| needed("chunk_index"))?);
    let [tokens, start, end, line] = ["n_tokens", "byte_start", "byte_end", "source_line"].map(number);
    let (tokens, start, end, line) = (tokens?, start?, end?, line?);
    let at = |c: &Option<Arc<dyn Array>>, i: usize| {
        c.as_ref().map(|c| c.as_primitive::<UInt64Type>()).filter(|c| !c.is_null(i)).map(|c| c.value(i))
    };
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let (Some(text), Some(doc_id), Some(chunk_index)) = (texts[i], docs[i], at(&index, i)) else {
            anyhow::bail!("row {i}: text, doc_id and chunk_index must not be null");
        };
        let n_tokens = match at(&tokens, i) {
            Some(n) => n as usize,
            None => tokenizer.encode(text, false).map_err(|e| anyhow::anyhow!("row {i}: {e}"))?.len(),
        };
        out.push(Chunk {
            doc_id: doc_id.to_string(),
            chunk_index: u32::try_from(chunk_index)?,
            text: text.to_string(),
            n_tokens: u32::try_from(n_tokens)?,
            byte_start: at(&start, i).unwrap_or(0),
            byte_end: at(&end, i).unwrap_or(text.len() as u64),
            source_file: files.as_ref().and_then(|f| f[i]).unwrap_or("").to_string(),
            source_line: at(&line, i).unwrap_or(0),
        });
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRephraser>()
}
