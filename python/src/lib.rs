//! `wrapflow._wrapflow`: the native half of the `wrapflow` Python package (its Python half,
//! `python/wrapflow/`, gives the documented API). Everything here calls the same workspace crates
//! as the CLI; nothing of their logic is repeated.

mod errors;
mod mix;
mod neardup;
mod ops;
mod plan;
mod rephrase;
#[cfg(feature = "testkit")]
mod testkit;
mod worker;

use pyo3::prelude::*;

#[pymodule]
fn _wrapflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    plan::register(m)?;
    ops::register(m)?;
    rephrase::register(m)?;
    mix::register(m)?;
    neardup::register(m)?;
    #[cfg(feature = "testkit")]
    testkit::register(m)?;
    m.add_function(wrap_pyfunction!(_ort_library, m)?)?;
    m.add_function(wrap_pyfunction!(_set_host_ort, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    init_logging();
    Ok(())
}

/// The ONNX Runtime library wrapflow loads: as the CLI finds it, else the host's.
#[pyfunction]
fn _ort_library() -> PyResult<String> {
    let path =
        wrapflow_operators::engine::runtime::library_path().map_err(|e| errors::to_py(e, errors::Kind::Model))?;
    Ok(path.display().to_string())
}

/// The library to load where the CLI's search finds none (the `onnxruntime` wheel's).
#[pyfunction]
fn _set_host_ort(path: std::path::PathBuf) {
    wrapflow_operators::engine::runtime::set_host_library(path);
}

/// Warnings and errors to stderr as the CLI writes them (secrets redacted); `WRAPFLOW_LOG`
/// overrides the level. A host that installed its own subscriber keeps it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRAPFLOW_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| wrapflow::plan::secrets::Redacting(std::io::stderr()))
        .try_init();
    wrapflow::plan::secrets::redact_panics();
}
