//! Fixtures for the package's own tests (built with `--features testkit` only): the tiny
//! random-weight model the Rust tests rephrase with, so that pytest can compare the `Rephraser`
//! with a CLI run without a real model.

use pyo3::prelude::*;
use wrapflow_operators::model::import::WeightFormat;
use wrapflow_operators::model::tiny::write_tiny_model;

use crate::errors::{Kind, to_py};

/// Writes the tiny model (f32 weights, seeded) into the directory `out`.
#[pyfunction]
fn _write_tiny_model(out: &str, seed: u64) -> PyResult<()> {
    write_tiny_model(out.as_ref(), seed, WeightFormat::Fp32, false).map(|_| ()).map_err(|e| to_py(e, Kind::Model))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_write_tiny_model, m)?)
}
