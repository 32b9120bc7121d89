//! `mix`: a plan's `MIX` statements over Arrow rows, into shards as `wrapflow remix` writes them.

use pyo3::prelude::*;
use pyo3_arrow::input::AnyRecordBatch;
use wrapflow::job::Fault;
use wrapflow::job::remix::{batch_rows, mix_rows, mixtures};
use wrapflow_operators::MixRow;

use crate::errors::{Kind, to_py};

/// Mixes `real` then `synthetic` rows (each batch one timestamp, as each shard file is one in a
/// remix) by the `MIX` statements in `mixes` into `output`; returns `remix.json` as JSON text.
#[pyfunction]
#[pyo3(signature = (real, synthetic, mixes, output, styles, name="<mixes>"))]
fn mix(
    py: Python<'_>,
    real: AnyRecordBatch,
    synthetic: AnyRecordBatch,
    mixes: &str,
    output: &str,
    styles: Vec<String>,
    name: &str,
) -> PyResult<String> {
    let (real, _) = real.into_table()?.into_inner();
    let (synthetic, _) = synthetic.into_table()?.into_inner();
    let mixes_cfg = mixtures(name, mixes, &styles).map_err(|e| to_py(e, Kind::Plan))?;
    py.detach(|| -> anyhow::Result<String> {
        let mut files: Vec<Vec<MixRow>> = vec![];
        for (batches, kind) in [(real, "real"), (synthetic, "synthetic")] {
            for (i, b) in batches.iter().enumerate() {
                let rows = batch_rows(b)
                    .map_err(|e| wrapflow::job::tag(Fault::Input, e.context(format!("{kind} batch {i}"))))?;
                if let Some(r) = rows.iter().find(|r| r.kind != kind) {
                    let e = anyhow::anyhow!(
                        "{kind} batch {i}: a row of kind {:?} ({} #{})",
                        r.kind,
                        r.doc_id,
                        r.chunk_index
                    );
                    return Err(wrapflow::job::tag(Fault::Input, e));
                }
                if kind == "synthetic"
                    && let Some(r) = rows.iter().find(|r| !styles.contains(&r.style))
                {
                    let e = anyhow::anyhow!("synthetic batch {i}: style {:?} is not one of {styles:?}", r.style);
                    return Err(wrapflow::job::tag(Fault::Input, e));
                }
                files.push(rows);
            }
        }
        let m = mix_rows(files, &mixes_cfg, (name, mixes), output, "<arrow>")
            .map_err(|e| wrapflow::job::tag(Fault::Output, e))?;
        Ok(serde_json::to_string(&m)?)
    })
    .map_err(|e| to_py(e, Kind::Other))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mix, m)?)
}
