//! `_Plan`: a plan file loaded, checked, explained and run on the CLI's runtime, and its gates
//! applied to pairs over Arrow.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanBuilder, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use pyo3::prelude::*;
use pyo3_arrow::PyTable;
use pyo3_arrow::input::AnyRecordBatch;
use wrapflow::cli::judge::Judge;
use wrapflow::job::Fault;
use wrapflow::job::progress::Mode;
use wrapflow::job::run::{self, RunOptions, STOP};
use wrapflow::plan::Plan;

use crate::errors::{Kind, to_py};

#[pyclass(name = "_Plan", module = "wrapflow._wrapflow", frozen)]
pub struct PyPlan {
    pub(crate) plan: Plan,
}

#[pymethods]
impl PyPlan {
    /// Reads and parses a plan file, with `sets` as `--set NAME=VALUE` would give them.
    #[staticmethod]
    #[pyo3(signature = (path, sets=Vec::new()))]
    fn load(path: &str, sets: Vec<(String, String)>) -> PyResult<Self> {
        let plan = Plan::load(path, &sets).map_err(|e| to_py(e.into(), Kind::Plan))?;
        Ok(PyPlan { plan })
    }

    /// Parses plan text; `file` names it in errors.
    #[staticmethod]
    #[pyo3(signature = (text, sets=Vec::new(), file="<plan>"))]
    fn parse(text: &str, sets: Vec<(String, String)>, file: &str) -> PyResult<Self> {
        let plan = Plan::parse(file, text, &sets).map_err(|e| to_py(e.into(), Kind::Plan))?;
        Ok(PyPlan { plan })
    }

    /// The plan's file name as given.
    #[getter]
    fn file(&self) -> String {
        self.plan.file.clone()
    }

    /// The output location (secrets redacted).
    #[getter]
    fn output(&self) -> String {
        wrapflow::plan::secrets::redact(&self.plan.sink.0.url).into_owned()
    }

    /// Validates statements, parameters, SQL, tokenizer and models without reading data.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| run::check(&self.plan).map(|_| ())).map_err(|e| to_py(e, Kind::Plan))
    }

    /// What `wrapflow explain` prints.
    fn explain(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| wrapflow::cli::explain::explanation(&self.plan)).map_err(|e| to_py(e, Kind::Plan))
    }

    /// The plan's gates on `data`'s `source`, `rewrite` and `style` columns, as `wrapflow judge`
    /// judges pairs: `data` with `accepted`, `reason`, `text` (the kept text), `cosine` and
    /// `scores` (the gates' scores, JSON) appended; with `lm`, a model directory, also `lm` (JSON).
    #[pyo3(signature = (data, lm=None))]
    fn judge(&self, py: Python<'_>, data: AnyRecordBatch, lm: Option<String>) -> PyResult<Py<PyAny>> {
        let (batches, schema) = data.into_table()?.into_inner();
        let out = py
            .detach(|| -> anyhow::Result<_> {
                let mut judge =
                    Judge::new(&self.plan, lm.as_deref()).map_err(|e| wrapflow::job::tag(Fault::Model, e))?;
                let mut out = Vec::with_capacity(batches.len());
                for b in &batches {
                    out.push(verdict_columns(&mut judge, b, lm.is_some())?);
                }
                Ok(out)
            })
            .map_err(|e| to_py(e, Kind::Input))?;
        let schema = out.first().map_or_else(|| verdict_schema(&schema, lm.is_some()), |b| b.schema());
        Ok(PyTable::try_new(out, schema)?.into_pyarrow(py)?.unbind())
    }

    /// Runs the plan as `wrapflow run` does; returns (manifest JSON, where a signal stopped it).
    /// The GIL is released while it runs. Ctrl-C (a Python `KeyboardInterrupt`) stops the job
    /// at its next checkpoint, then is raised again.
    #[pyo3(signature = (workers=1, progress=false, force=false, restart=false, checkpoint_files=16, checkpoint_mb=256))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        workers: usize,
        progress: bool,
        force: bool,
        restart: bool,
        checkpoint_files: usize,
        checkpoint_mb: u64,
    ) -> PyResult<(String, Option<String>)> {
        let opts = RunOptions {
            workers,
            // As the CLI: a bar on a terminal, else log lines.
            progress: if progress { Mode::Auto } else { Mode::Quiet },
            limits: wrapflow::job::follow::Limits {
                files: checkpoint_files,
                bytes: checkpoint_mb << 20,
                interval: None,
            },
            claim: wrapflow::job::output::ClaimMode { force, restart },
            ..RunOptions::default()
        };
        opts.validate().map_err(|e| to_py(e, Kind::Plan))?;
        STOP.store(false, Ordering::SeqCst);
        let plan = self.plan.clone();
        let job = std::thread::Builder::new()
            .name("wrapflow-run".into())
            .spawn(move || run::run(&plan, &opts))
            .map_err(|e| to_py(e.into(), Kind::Other))?;
        // Python sees signals only while it holds the GIL: take it back every 50 ms to look.
        let mut interrupted = None;
        while !job.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(50)));
            if let Err(e) = py.check_signals()
                && interrupted.is_none()
            {
                STOP.store(true, Ordering::SeqCst);
                interrupted = Some(e);
            }
        }
        let manifest = match job.join() {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(to_py(e, Kind::Other)),
            Err(_) => return Err(to_py(anyhow::anyhow!("the job's thread panicked"), Kind::Other)),
        };
        let stopped = run::stopped_at(&manifest);
        if let Some(e) = interrupted {
            // Ctrl-C is raised even when the job ended before it could stop at a checkpoint.
            let note = match &stopped {
                Some(at) => format!("stopped {at}: run the plan again to resume"),
                None => "the run had finished before it could stop: its output is complete".to_string(),
            };
            let err = pyo3::exceptions::PyKeyboardInterrupt::new_err(note);
            err.set_cause(py, Some(e));
            return Err(err);
        }
        let json = serde_json::to_string(&manifest).map_err(|e| to_py(e.into(), Kind::Other))?;
        Ok((json, stopped))
    }
}

const VERDICT_COLUMNS: [(&str, DataType); 5] = [
    ("accepted", DataType::Boolean),
    ("reason", DataType::Utf8),
    ("text", DataType::Utf8),
    ("cosine", DataType::Float64),
    ("scores", DataType::Utf8),
];

fn verdict_schema(input: &Schema, lm: bool) -> SchemaRef {
    let mut fields: Vec<_> = input.fields().iter().cloned().collect();
    fields.extend(VERDICT_COLUMNS.iter().map(|(n, t)| Arc::new(Field::new(*n, t.clone(), true))));
    if lm {
        fields.push(Arc::new(Field::new("lm", DataType::Utf8, true)));
    }
    Arc::new(Schema::new(fields))
}

/// `b` with its verdict columns: its own columns are passed on as they are.
fn verdict_columns(judge: &mut Judge<'_>, b: &RecordBatch, lm: bool) -> anyhow::Result<RecordBatch> {
    let column = |name: &str| -> anyhow::Result<Vec<Option<&str>>> {
        let c = b.column_by_name(name).ok_or_else(|| anyhow::anyhow!("no column {name:?}"))?;
        let c = c.as_string_opt::<i32>().ok_or_else(|| anyhow::anyhow!("column {name:?} is not utf8 strings"))?;
        Ok(c.iter().collect())
    };
    let (sources, rewrites, styles) = (column("source")?, column("rewrite")?, column("style")?);
    let (mut accepted, mut reason, mut text) = (BooleanBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut cosine, mut scores, mut lms) = (Float64Builder::new(), StringBuilder::new(), StringBuilder::new());
    for i in 0..b.num_rows() {
        let (Some(source), Some(rewrite), Some(style)) = (sources[i], rewrites[i], styles[i]) else {
            anyhow::bail!("row {i}: source, rewrite and style must not be null");
        };
        let v = judge.verdict(source, rewrite, style).map_err(|e| e.context(format!("row {i}")))?;
        accepted.append_value(v["accepted"].as_bool().unwrap_or(false));
        reason.append_value(v["reason"].as_str().unwrap_or_default());
        text.append_value(v["text"].as_str().unwrap_or_default());
        cosine.append_option(v["cosine"].as_f64());
        scores.append_value(v["gates"].to_string());
        lms.append_value(v["lm"].to_string());
    }
    let mut columns = b.columns().to_vec();
    let built: [ArrayRef; 5] = [
        Arc::new(accepted.finish()),
        Arc::new(reason.finish()),
        Arc::new(text.finish()),
        Arc::new(cosine.finish()),
        Arc::new(scores.finish()),
    ];
    columns.extend(built);
    if lm {
        columns.push(Arc::new(lms.finish()));
    }
    Ok(RecordBatch::try_new(verdict_schema(&b.schema(), lm), columns)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPlan>()
}
