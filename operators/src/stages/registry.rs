//! The stages a plan can name with `STAGE name WITH (...)`, declared in one list with
//! [`stages!`](crate::stages): each is a config type implementing [`NamedStage`], and its entry
//! builds the stage from the statement's options. A stage's shape (what its records are) says
//! where a job runs it: documents between dedup and chunk, chunks after chunking (before they
//! are written and rephrased).
//!
//! A stage is its own file (config, extension trait, `NamedStage`) plus one line in
//! `stages/mod.rs`; ARCHITECTURE.md ("Where to add things") has a worked example, a `lowercase`
//! stage built from its registry entry and run as a job runs it, compiled and run as a doc test of
//! this crate.

use serde::de::DeserializeOwned;
use serde_json::Value;
use timely::dataflow::StreamVec;

use crate::record::{Chunk, Document};
use crate::stages::context::StageContext;

/// A stage a plan can name: its config type, which `STAGE name WITH (...)` fills in.
pub trait NamedStage: DeserializeOwned + 'static {
    /// The name plans use.
    const NAME: &'static str;
    /// What flows in and out: [`Document`] or [`Chunk`].
    type Record: Record;
    /// Adds the stage to `stream` (the stage's extension-trait method).
    fn apply<'s>(
        &self,
        stream: StreamVec<'s, u64, Self::Record>,
        ctx: &StageContext,
    ) -> StreamVec<'s, u64, Self::Record>;
}

/// Builds a stage of records `R` from a statement's options.
pub type BuildFn<R> = for<'s> fn(StreamVec<'s, u64, R>, &Value, &StageContext) -> StreamVec<'s, u64, R>;

/// A registered stage's builder, by the records it takes and gives.
pub enum Build {
    Documents(BuildFn<Document>),
    Chunks(BuildFn<Chunk>),
}

/// The records a named stage can take: each says which [`Build`] it is.
pub trait Record: Clone + 'static {
    /// Where a job runs stages of these records (a plan error names it; `explain` lists the
    /// stage at that place).
    const PLACE: &'static str;
    fn build(f: BuildFn<Self>) -> Build;
}

impl Record for Document {
    const PLACE: &'static str = "documents, after dedup and before chunking";
    fn build(f: BuildFn<Self>) -> Build {
        Build::Documents(f)
    }
}

impl Record for Chunk {
    const PLACE: &'static str = "chunks, after chunking";
    fn build(f: BuildFn<Self>) -> Build {
        Build::Chunks(f)
    }
}

/// A stage a plan can name, as the registry holds it.
pub struct RegisteredStage {
    pub name: &'static str,
    /// Where it runs ([`Record::PLACE`]).
    pub place: &'static str,
    /// Checks the statement's options (a plan error names what is wrong).
    pub check: fn(&Value) -> Result<(), String>,
    /// Its builder.
    pub make: fn() -> Build,
}

/// The registry entry of stage `S`.
pub const fn entry<S: NamedStage>() -> RegisteredStage {
    RegisteredStage { name: S::NAME, place: S::Record::PLACE, check: check::<S>, make: make::<S> }
}

fn check<S: NamedStage>(options: &Value) -> Result<(), String> {
    serde_json::from_value::<S>(options.clone()).map(|_| ()).map_err(|e| e.to_string())
}

fn make<S: NamedStage>() -> Build {
    S::Record::build(build::<S>)
}

/// The stage from its options; a bad option (the plan checked them) fails the run.
fn build<'s, S: NamedStage>(
    stream: StreamVec<'s, u64, S::Record>,
    options: &Value,
    ctx: &StageContext,
) -> StreamVec<'s, u64, S::Record> {
    match serde_json::from_value::<S>(options.clone()) {
        Ok(config) => config.apply(stream, ctx),
        Err(e) => {
            ctx.fail(format!("STAGE {}: {e}", S::NAME));
            crate::stages::context::nothing(stream, "BadStage")
        }
    }
}

/// The registered stage called `name`, or an error that lists them.
pub fn named_stage(name: &str) -> Result<&'static RegisteredStage, String> {
    let all = crate::stages::STAGES;
    all.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        format!("unknown stage `{name}` (known: {})", names.join(", "))
    })
}

/// Declares each stage's module and its registry entry (see `stages/mod.rs`).
macro_rules! stages {
    ($($module:ident :: $config:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every stage a plan can name, in declaration order.
        pub static STAGES: &[registry::RegisteredStage] = &[$(registry::entry::<$module::$config>()),*];
    };
}
