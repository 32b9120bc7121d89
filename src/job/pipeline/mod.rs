//! A plan's pipeline: its stages in order, one [`Step`] each, built from the plan by the stage
//! kinds registered in [`KINDS`]. The dataflow builder (`job::dataflow`) adds each step
//! to a worker's dataflow and `wrapflow explain` prints each one's description: both walk the
//! same list, so what explain shows is what runs.
//!
//! A kind of stage is a file of this folder (a type implementing [`Step`], and `steps`, the
//! steps of that kind a plan holds) plus one line in `kinds!` below (which declares its module
//! and lists it in [`KINDS`], whose order is the pipeline's). Stages over documents or chunks
//! that plans name with `STAGE name` need no file here: they are registered in the operators
//! crate ([`wrapflow_operators::stages::registry`]) and run by `document_stages` and
//! `chunk_stages`.

mod named;

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
    /// What `explain` prints for it.
    fn describe(&self) -> Vec<Line>;
    /// Adds the stage to a worker's dataflow.
    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>);
}

/// The steps of one kind that a plan holds, in plan order (none when it has no such stage).
pub type Kind = for<'p> fn(&'p Plan) -> Vec<Box<dyn Step + 'p>>;

/// Declares each kind's module and lists its `steps` in [`KINDS`], in order.
macro_rules! kinds {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every kind of stage, in pipeline order.
        pub const KINDS: &[Kind] = &[$($module::steps),*];
    };
}

kinds! {
    input,
    dedup,
    neardup,
    document_stages,
    chunk,
    chunk_stages,
    rephrase,
    sink,
    mix,
}

/// The plan's pipeline, in order.
pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    KINDS.iter().flat_map(|kind| kind(plan)).collect()
}

/// A line of `explain`: a stage's name, what it does, and how it is numbered.
pub struct Line {
    pub name: &'static str,
    pub what: String,
    pub number: Number,
}

/// How an `explain` line is numbered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// The next number.
    Next,
    /// The previous line's number (one stage with several parts, as the mixtures).
    Same,
    /// None: a stage that runs inside the numbered one before it (neardup after dedup, named
    /// stages beside the stage whose records they take).
    Sub,
}

impl Line {
    pub fn new(name: &'static str, what: String) -> Line {
        Line { name, what, number: Number::Next }
    }

    pub fn numbered(self, number: Number) -> Line {
        Line { number, ..self }
    }
}

/// The pipeline as `explain` prints it.
pub fn describe(plan: &Plan) -> String {
    let (mut out, mut n) = (String::new(), 0);
    for line in steps(plan).iter().flat_map(|s| s.describe()) {
        n += usize::from(line.number == Number::Next);
        let label = if line.number == Number::Sub { "  ".to_string() } else { format!("{n}.") };
        out += &format!("  {label} {:<10}{}\n", line.name, line.what);
    }
    out
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
    /// The rephrasing backends, one per REPHRASE (none when the plan does not rephrase).
    pub backends: &'a [SharedBackend],
    /// The rephrase journal, when the plan rephrases.
    pub journal: Option<Journal>,
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;

    #[test]
    fn explain_lists_every_stage_in_the_order_the_dataflow_builds_them() {
        // Statements in any order: the pipeline's order is KINDS'.
        let plan = "PARAM output;\nMIX m;\nMIX n;\nSTAGE clean_whitespace WITH (max_blank_lines = 0);\n\
            CREATE EXTERNAL TABLE raw STORED AS JSONL LOCATION 'data';\nINPUT raw;\nNEARDUP;\n\
            DEDUP ON lower(text);\nCHUNK WITH (max_tokens = 100, tokenizer = 'tok.json');\nSINK '${output}';\n";
        let p = Plan::parse("p.sql", plan, &[("output".into(), "out".into())]).unwrap();
        let names: Vec<&str> = super::steps(&p).iter().flat_map(|s| s.describe()).map(|l| l.name).collect();
        assert_eq!(names, ["input", "dedup", "neardup", "stage", "chunk", "sink", "mix", "mix"]);
        // As explain always printed it: neardup and named stages unnumbered, mixtures one number.
        let text = super::describe(&p);
        assert!(text.starts_with("  1. input     raw  (per-worker DataFusion query)\n"), "{text}");
        assert!(text.contains("\n     neardup   MinHash "), "{text}");
        assert!(text.contains("\n     stage     clean_whitespace {\"max_blank_lines\":0}\n"), "{text}");
        assert!(text.contains("\n  3. chunk     max_tokens=100 "), "{text}");
        assert!(
            text.contains("\n  5. mix       m → mix/m/  ratio=") && text.contains("\n  5. mix       n → mix/n/"),
            "{text}"
        );
    }
}
