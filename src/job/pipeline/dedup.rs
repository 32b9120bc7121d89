//! **Dedup** (`DEDUP ON expr`): exact, global; the first document of each key is kept.

use wrapflow_operators::{Dedup, DedupConfig};

use super::{Env, Flow, Line, Step};
use crate::plan::Plan;

struct ExactDedup<'p>(Option<&'p str>);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    vec![Box::new(ExactDedup(plan.dedup.as_ref().map(|(e, _)| e.as_str())))]
}

impl Step for ExactDedup<'_> {
    fn describe(&self) -> Vec<Line> {
        vec![Line::new("dedup", self.0.map_or("none".into(), |e| format!("exact, global, ON {e}")))]
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        if self.0.is_some() {
            flow.docs = flow.docs.take().map(|d| d.dedup(&DedupConfig::default(), env.ctx));
        }
    }
}
