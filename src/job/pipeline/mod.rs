//! A plan's pipeline: its stages in order, one [`Step`] each, built from the plan by the stage
//! kinds registered in [`KINDS`]. The dataflow builder (`job::dataflow`) adds each step
//! to a worker's dataflow and `wrapflow explain` prints each one's description: both walk the
//! same list, so what explain shows is what runs.
//!
//! A kind of stage is a file of this folder (a type implementing [`Step`], and `steps`, the
//! steps of that kind a plan holds) plus one line in [`KINDS`], whose order is the pipeline's.
//! Stages over documents or chunks that plans name with `STAGE name` need no file here: they
//! are registered in the operators crate ([`wrapflow_operators::stages::registry`]) and run by
//! [`named`].

mod chunk;
mod dedup;
mod input;
mod mix;
mod named;
mod neardup;
mod rephrase;
mod sink;

use std::cell::RefCell;
use std::rc::Rc;

use timely::dataflow::{ProbeHandle, StreamVec};
use wrapflow_operators::engine::SharedBackend;
use wrapflow_operators::{Chunk, Document, Reject, StageContext, Synthetic};

use crate::job::context::Shared;
use crate::job::wrap::Journal;
use crate::plan::Plan;
use crate::report::merge::WorkerReport;

/// One stage of a plan's pipeline.
pub trait Step {
    /// What `explain` prints: a numbered line per entry, `(name, what it does)`.
    fn describe(&self) -> Vec<(&'static str, String)>;
    /// Adds the stage to a worker's dataflow.
    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>);
}

/// The steps of one kind that a plan holds, in plan order (none when it has no such stage).
pub type Kind = for<'p> fn(&'p Plan) -> Vec<Box<dyn Step + 'p>>;

/// Every kind of stage, in pipeline order.
pub const KINDS: &[Kind] = &[
    input::steps,
    dedup::steps,
    neardup::steps,
    named::document_steps,
    chunk::steps,
    named::chunk_steps,
    rephrase::steps,
    sink::steps,
    mix::steps,
];

/// The plan's pipeline, in order.
pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    KINDS.iter().flat_map(|kind| kind(plan)).collect()
}

/// The pipeline as `explain` prints it: one numbered line per stage.
pub fn describe(plan: &Plan) -> String {
    let lines = steps(plan).iter().flat_map(|s| s.describe()).collect::<Vec<_>>();
    lines.iter().enumerate().map(|(i, (name, what))| format!("  {}. {name:<10}{what}\n", i + 1)).collect()
}

/// A worker's streams as the steps build them: each step takes what it reads and leaves what it
/// gives for the steps after it.
pub struct Flow<'s> {
    /// Documents until chunking takes them.
    pub docs: Option<StreamVec<'s, u64, Document>>,
    /// Chunks, from chunking on.
    pub chunks: Option<StreamVec<'s, u64, Chunk>>,
    /// Accepted synthetic rows, when the plan rephrases.
    pub synthetic: Option<StreamVec<'s, u64, Synthetic>>,
    /// Every stage's rejects, and the feed's.
    pub rejects: StreamVec<'s, u64, Reject>,
}

impl<'s> Flow<'s> {
    /// The chunks; steps after chunking read them.
    fn chunks(&self) -> StreamVec<'s, u64, Chunk> {
        self.chunks.clone().expect("KINDS puts chunking before the steps that read chunks")
    }
}

/// What the steps share in one worker.
pub struct Env<'a> {
    pub sh: &'a Shared,
    pub ctx: &'a StageContext,
    /// Where sinks and mixtures record what they wrote.
    pub report: &'a Rc<RefCell<WorkerReport>>,
    /// Passed by a time once every sink has finished it.
    pub probe: &'a ProbeHandle<u64>,
    /// The rephrasing backend, when the plan rephrases.
    pub backend: Option<&'a SharedBackend>,
    /// The rephrase journal, taken by the rephrase step.
    pub journal: RefCell<Option<Journal>>,
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;

    #[test]
    fn explain_lists_every_stage_in_the_order_the_dataflow_builds_them() {
        // Statements in any order: the pipeline's order is KINDS'.
        let plan = "PARAM output;\nMIX m;\nSTAGE clean_whitespace WITH (max_blank_lines = 0);\n\
            CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION 'data';\nINPUT raw;\nNEARDUP;\n\
            DEDUP ON lower(text);\nCHUNK WITH (max_tokens = 100, tokenizer = 'tok.json');\nSINK '${output}';\n";
        let p = Plan::parse("p.sql", plan, &[("output".into(), "out".into())]).unwrap();
        let names: Vec<&str> = super::steps(&p).iter().flat_map(|s| s.describe()).map(|(n, _)| n).collect();
        assert_eq!(names, ["input", "dedup", "neardup", "stage", "chunk", "sink", "mix"]);
        let text = super::describe(&p);
        assert!(text.starts_with("  1. input     raw  (per-worker DataFusion query)\n"), "{text}");
        assert!(text.contains("\n  4. stage     clean_whitespace {\"max_blank_lines\":0}\n"), "{text}");
        assert!(text.contains("\n  5. chunk     max_tokens=100 "), "{text}");
        assert!(text.contains("\n  7. mix       m → mix/m/  ratio="), "{text}");
    }
}
