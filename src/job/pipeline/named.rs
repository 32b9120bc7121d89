//! **Named stages** (`STAGE name WITH (...)`): the operators crate's registered stages, each run
//! in plan order where its records flow; the kinds `document_stages` and `chunk_stages` take the
//! plan's stages of each place.

use serde_json::Value;
use wrapflow_operators::stages::named_stage;
use wrapflow_operators::stages::registry::Build;

use super::{Env, Flow, Line, Number, Step};
use crate::plan::Plan;

struct Named<'p> {
    name: &'p str,
    options: &'p Value,
}

/// The plan's stages whose records are those of `place`, in plan order; with `unknown`, also
/// those the registry lacks (a plan checked against another build), which then fail the run.
pub fn at<'p>(plan: &'p Plan, place: &str, unknown: bool) -> Vec<Box<dyn Step + 'p>> {
    let here = |name: &str| named_stage(name).map_or(unknown, |s| s.place == place);
    plan.stages
        .iter()
        .filter(|(name, ..)| here(name))
        .map(|(name, options, _)| Box::new(Named { name, options }) as Box<dyn Step>)
        .collect()
}

impl Step for Named<'_> {
    fn describe(&self) -> Vec<Line> {
        vec![Line::new("stage", format!("{} {}", self.name, self.options)).numbered(Number::Sub)]
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        // The plan checked the name; a registry without it is a build of another version.
        let stage = match named_stage(self.name) {
            Ok(s) => s,
            Err(e) => return env.ctx.fail(e),
        };
        match (stage.make)() {
            Build::Documents(build) => flow.docs = flow.docs.take().map(|d| build(d, self.options, env.ctx)),
            Build::Chunks(build) => flow.chunks = flow.chunks.take().map(|c| build(c, self.options, env.ctx)),
        }
    }
}
