//! Commands over what a run wrote: `wrapflow report`, `wrapflow status`, `wrapflow remix`.

use crate::job::status;
use crate::plan::secrets::redact;
use crate::report::text;

/// Prints a run's counts, fidelity and mixtures (or its manifest's figures as JSON), and
/// writes its `report.html`.
pub fn report(output: &str, json: bool) -> anyhow::Result<()> {
    let m = text::load(output)?;
    if json {
        super::out(format!("{}\n", serde_json::to_string_pretty(&m)?));
    } else {
        super::out(text::text(&m));
        super::out(format!("plots: {}\n", text::write_html(output, &m)?));
    }
    Ok(())
}

/// Prints where a job stands.
pub fn status(output: &str) -> anyhow::Result<()> {
    let s = status::read(output)?;
    super::out(redact(&status::text(&s)));
    Ok(())
}

/// Writes new mixtures from a finished run.
pub fn remix(from: &str, mixes: &str, out: &str) -> anyhow::Result<()> {
    let m = crate::job::remix::run(from, mixes, out)?;
    super::out(crate::job::remix::text(&m));
    super::out(format!("output: {out}  (remix.json, mix/)\n"));
    Ok(())
}
