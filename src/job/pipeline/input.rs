//! **Input**: the plan's DataFusion query, run per worker; the feed sends its rows in as
//! documents (`job::feed`), so the step only describes it.

use super::{Env, Flow, Line, Step};
use crate::plan::{InputSpec, Plan};

struct Input<'p>(&'p InputSpec);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    vec![Box::new(Input(&plan.input.0))]
}

impl Step for Input<'_> {
    fn describe(&self) -> Vec<Line> {
        let input = match self.0 {
            InputSpec::Relation(r) => r.clone(),
            InputSpec::Query(q) => format!("({q})"),
        };
        vec![Line::new("input", format!("{input}  (per-worker DataFusion query)"))]
    }

    fn build<'s>(&self, _: &mut Flow<'s>, _: &Env<'_>) {}
}
