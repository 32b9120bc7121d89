//! One exception class per kind of failure, all under `wrapflow.WrapflowError`, each carrying the
//! CLI's message (its causes said once, secrets redacted).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(_wrapflow, WrapflowError, PyException, "Any error wrapflow reports.");
create_exception!(_wrapflow, PlanError, WrapflowError, "A plan that does not parse or validate.");
create_exception!(_wrapflow, InputError, WrapflowError, "Input that cannot be read or used.");
create_exception!(_wrapflow, ModelError, WrapflowError, "A model or tokenizer that cannot be loaded or run.");
create_exception!(_wrapflow, OutputError, WrapflowError, "An output that cannot be claimed or written.");

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WrapflowError", py.get_type::<WrapflowError>())?;
    m.add("PlanError", py.get_type::<PlanError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("OutputError", py.get_type::<OutputError>())?;
    Ok(())
}

/// The CLI's message for `e`, redacted.
pub fn message(e: &anyhow::Error) -> String {
    wrapflow::plan::secrets::redact(&wrapflow::cli::message(e)).into_owned()
}

/// `e` as the exception of its kind: a plan error wherever the plan is named as the cause, else
/// the kind the job layer tagged it with, else `fallback`.
pub fn to_py(e: anyhow::Error, fallback: Kind) -> PyErr {
    let kind = if e.chain().any(|c| c.is::<wrapflow::plan::PlanError>()) {
        Kind::Plan
    } else {
        match wrapflow::job::Fault::of(&e) {
            Some(wrapflow::job::Fault::Input) => Kind::Input,
            Some(wrapflow::job::Fault::Model) => Kind::Model,
            Some(wrapflow::job::Fault::Output) => Kind::Output,
            None => fallback,
        }
    };
    let msg = message(&e);
    match kind {
        Kind::Plan => PlanError::new_err(msg),
        Kind::Input => InputError::new_err(msg),
        Kind::Model => ModelError::new_err(msg),
        Kind::Output => OutputError::new_err(msg),
        Kind::Other => WrapflowError::new_err(msg),
    }
}

#[derive(Clone, Copy)]
pub enum Kind {
    Plan,
    Input,
    Model,
    Output,
    Other,
}
