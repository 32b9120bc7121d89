//! `wrapflow explain` and `wrapflow check`: a plan's stages and DataFusion plan, or only the
//! validation, without reading data.

use crate::cli::PlanArgs;
use crate::job::run;
use crate::plan::Plan;

/// Validates the plan (statements, parameters, SQL, tokenizer).
pub fn check(a: &PlanArgs) -> anyhow::Result<()> {
    let p = Plan::load(&a.plan, &a.sets)?;
    run::check(&p)?;
    println!("{}: ok", p.file);
    Ok(())
}

/// Prints the plan's stages, its input query and DataFusion's logical plan of it.
pub fn explain(a: &PlanArgs) -> anyhow::Result<()> {
    let p = Plan::load(&a.plan, &a.sets)?;
    print!("{}", explanation(&p)?);
    Ok(())
}

/// What `wrapflow explain` prints (also `Plan.explain()` in Python): the stages, the input query
/// and DataFusion's logical plan of it, secrets redacted. Validates the plan first.
pub fn explanation(p: &Plan) -> anyhow::Result<String> {
    let logical = run::check(p)?;
    let redact = |s: String| crate::plan::secrets::redact(&s).into_owned();
    Ok(format!(
        "Stages:\n{}\nInput query:\n  {}\n\nDataFusion logical plan:\n{}\n",
        redact(crate::job::pipeline::describe(p)),
        redact(p.input_query()),
        redact(logical.display_indent().to_string())
    ))
}
