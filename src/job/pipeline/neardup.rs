//! **Near-duplicate dedup** (`NEARDUP`): MinHash bands over word shingles, global.

use wrapflow_operators::stages::dedup::near::{NearDedup, NearDupConfig, NearDupMethod};

use super::{Env, Flow, Line, Number, Step};
use crate::plan::Plan;

struct NearDup<'p>(&'p NearDupConfig);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    plan.neardup.iter().map(|(c, _)| Box::new(NearDup(c)) as Box<dyn Step>).collect()
}

impl Step for NearDup<'_> {
    fn describe(&self) -> Vec<Line> {
        let n = self.0;
        let method = match n.method {
            NearDupMethod::Cluster => "first document per cluster (differential dataflow)",
            NearDupMethod::Band => "first document per band",
        };
        let what = format!(
            "MinHash {} bands × {} rows over {}-word shingles (same band at Jaccard ≈ {:.2}), {method}, global",
            n.bands,
            n.rows,
            n.ngram,
            n.threshold()
        );
        vec![Line::new("neardup", what).numbered(Number::Sub)]
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        flow.docs = flow.docs.take().map(|d| d.near_dedup(self.0, env.ctx));
    }
}
