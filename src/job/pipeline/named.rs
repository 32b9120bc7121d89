//! **Named stages** (`STAGE name WITH (...)`): the operators crate's registered stages, each run
//! in plan order where its records flow (documents before chunking, chunks after it).

use serde_json::Value;
use wrapflow_operators::stages::named_stage;
use wrapflow_operators::stages::registry::Build;

use super::{Env, Flow, Step};
use crate::plan::Plan;

struct Named<'p> {
    name: &'p str,
    options: &'p Value,
}

fn of_place<'p>(plan: &'p Plan, place: &str) -> Vec<Box<dyn Step + 'p>> {
    let on = |name: &str| named_stage(name).is_ok_and(|s| s.place == place);
    plan.stages
        .iter()
        .filter(|(name, ..)| on(name))
        .map(|(name, options, _)| Box::new(Named { name, options }) as Box<dyn Step>)
        .collect()
}

/// The plan's stages over documents.
pub fn document_steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    of_place(plan, <wrapflow_operators::Document as wrapflow_operators::stages::registry::Record>::PLACE)
}

/// The plan's stages over chunks.
pub fn chunk_steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    of_place(plan, <wrapflow_operators::Chunk as wrapflow_operators::stages::registry::Record>::PLACE)
}

impl Step for Named<'_> {
    fn describe(&self) -> Vec<(&'static str, String)> {
        vec![("stage", format!("{} {}", self.name, self.options))]
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
