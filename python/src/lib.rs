//! `wrapflow._wrapflow`: the native half of the `wrapflow` Python package (its Python half,
//! `python/wrapflow/`, gives the documented API). Everything here calls the same workspace crates
//! as the CLI; nothing of their logic is repeated.

mod errors;
mod ops;
mod plan;

use pyo3::prelude::*;

#[pymodule]
fn _wrapflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    plan::register(m)?;
    ops::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    init_logging();
    Ok(())
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
