//! `_NearDedup`: a plan's `NEARDUP` stage over a stream of Arrow batches. Its dataflow lives in a
//! [`WorkerThread`] for the object's life: each call is one timestamp of it, so clusters span calls
//! as they span a run's batches.

use std::cell::RefCell;
use std::rc::Rc;

use arrow::array::{BooleanArray, RecordBatch};
use pyo3::prelude::*;
use pyo3_arrow::PyTable;
use pyo3_arrow::input::AnyRecordBatch;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;
use wrapflow_operators::record::Document;
use wrapflow_operators::stages::context::StageContext;
use wrapflow_operators::stages::dedup::near::{NearDedup, NearDupConfig};

use crate::errors::{Kind, to_py};
use crate::ops::strings;
use crate::worker::WorkerThread;

/// The dataflow's ends: where documents go in, how far they got, which came out (their row
/// numbers).
struct Flow {
    input: InputHandle<u64, CapacityContainerBuilder<Vec<Document>>>,
    probe: ProbeHandle<u64>,
    kept: Rc<RefCell<Vec<u64>>>,
}

#[pyclass(name = "_NearDedup", module = "wrapflow._wrapflow", frozen)]
pub struct PyNearDedup {
    worker: WorkerThread<Vec<Document>, Vec<u64>>,
    column: String,
    /// Rows numbered across calls (from 1): a document's number orders it, so the first
    /// occurrence of a cluster in call order is the one kept.
    rows: std::sync::atomic::AtomicU64,
}

#[pymethods]
impl PyNearDedup {
    /// `options` are `NEARDUP WITH (...)`'s, as JSON (`{}`: the plan's defaults).
    #[new]
    fn new(py: Python<'_>, column: String, options: &str) -> PyResult<Self> {
        let cfg: NearDupConfig =
            serde_json::from_str(options).map_err(|e| to_py(anyhow::anyhow!("NEARDUP options: {e}"), Kind::Plan))?;
        cfg.check().map_err(|e| to_py(anyhow::anyhow!("NEARDUP options: {e}"), Kind::Plan))?;
        let start = move |worker: &mut Worker| -> anyhow::Result<Flow> {
            let (mut input, probe, kept) = (InputHandle::new(), ProbeHandle::new(), Rc::new(RefCell::new(vec![])));
            let k = kept.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .container::<Vec<Document>>()
                    .near_dedup(&cfg, &StageContext::default())
                    .inspect(move |d: &Document| k.borrow_mut().push(d.source_line))
                    .probe_with(&probe);
            });
            Ok(Flow { input, probe, kept })
        };
        let serve = |worker: &mut Worker, flow: &mut Flow, mut docs: Vec<Document>| {
            flow.input.send_batch(&mut docs);
            let next = flow.input.time() + 1;
            flow.input.advance_to(next);
            while flow.probe.less_than(&next) {
                worker.step();
            }
            Ok(std::mem::take(&mut *flow.kept.borrow_mut()))
        };
        let worker = WorkerThread::spawn(py, "wrapflow-neardup", Kind::Other, start, serve)?;
        Ok(PyNearDedup { worker, column, rows: 0.into() })
    }

    /// `(kept, duplicates)` of `data` with its own columns: a row is a duplicate when it is near
    /// one that came before it (in this call or an earlier one). A NULL text is never one.
    fn split(&self, py: Python<'_>, data: AnyRecordBatch) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let (batches, schema) = data.into_table()?.into_inner();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let first = self.rows.fetch_add(rows as u64, std::sync::atomic::Ordering::SeqCst) + 1;
        let texts = batches
            .iter()
            .map(|b| strings(b, &self.column)?.ok_or_else(|| anyhow::anyhow!("no column {:?}", self.column)))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| to_py(e, Kind::Input))?;
        let mut docs = Vec::with_capacity(rows);
        let mut line = first;
        for batch in &texts {
            for &t in batch {
                if let Some(text) = t {
                    let id = line.to_string();
                    docs.push(Document {
                        id,
                        text: text.into(),
                        source_file: String::new(),
                        source_line: line,
                        dedup_key: 0,
                    });
                }
                line += 1;
            }
        }
        let mut kept = self.worker.call(py, docs, Kind::Other)?;
        kept.sort_unstable();
        let (mut yes, mut no, mut line) = (vec![], vec![], first);
        for (b, batch) in batches.iter().zip(&texts) {
            let mask: BooleanArray = batch
                .iter()
                .map(|t| {
                    let keep = t.is_none() || kept.binary_search(&line).is_ok();
                    line += 1;
                    Some(keep)
                })
                .collect();
            let not = arrow::compute::not(&mask).map_err(|e| to_py(e.into(), Kind::Other))?;
            let filter =
                |m: &BooleanArray| arrow::compute::filter_record_batch(b, m).map_err(|e| to_py(e.into(), Kind::Other));
            yes.push(filter(&mask)?);
            no.push(filter(&not)?);
        }
        let table = |t: Vec<RecordBatch>| -> PyResult<Py<PyAny>> {
            Ok(PyTable::try_new(t, schema.clone())?.into_pyarrow(py)?.unbind())
        };
        Ok((table(yes)?, table(no)?))
    }

    /// Stops the dataflow and frees its state.
    fn close(&self) {
        self.worker.close();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNearDedup>()
}
