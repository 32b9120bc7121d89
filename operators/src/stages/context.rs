//! What every stage is given besides its input stream and its serde config.
//!
//! All stages have one shape: `stream.stage(&Config, &StageContext) -> outputs`, where the
//! outputs are the stage's rows and, for a stage that can refuse a row, a second stream of
//! [`crate::Reject`]s. The context carries what a worker shares among its stages:
//!
//! - `states`: where a stage with state registers it for checkpoints (`None`: the dataflow is not
//!   checkpointed). A stage saves and restores its own state through the hooks it registers.
//! - `metrics`: where a stage counts what it did, under names that start with its own.
//! - `errors`: where a stage reports a failure that must fail the run (a write that failed after
//!   its retries); the driver checks it as time advances.
//! - the worker's resources: the tokenizer, the output location, the embedder session (a model
//!   backend is handed to the rephrase stage itself: a plan may have more than one).
//!
//! ```
//! use std::{cell::Cell, rc::Rc};
//! use timely::dataflow::operators::{Inspect, ToStream};
//! use wrapflow_operators::{Dedup, DedupConfig, Document, StageContext};
//!
//! let (kept, counted) = timely::execute_directly(|worker| {
//!     let ctx = StageContext::default(); // no checkpoints, nothing but metrics
//!     let kept = Rc::new(Cell::new(0));
//!     let k = kept.clone();
//!     worker.dataflow::<u64, _, _>(|scope| {
//!         let doc = |id: &str, key| Document {
//!             id: id.into(), text: id.into(), source_file: "f".into(), source_line: 1, dedup_key: key,
//!         };
//!         vec![doc("a", 1), doc("b", 1), doc("c", 2)]
//!             .to_stream(scope)
//!             .container::<Vec<_>>()
//!             .dedup(&DedupConfig::default(), &ctx)
//!             .inspect(move |_| k.set(k.get() + 1));
//!     });
//!     while worker.step() {}
//!     (kept.get(), ctx.metrics.counter("dedup.out"))
//! });
//! assert_eq!((kept, counted), (2, 2));
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;
use tokenizers::Tokenizer;
use tokio::runtime::Handle;

use crate::engine::Embedder;
use crate::fault::Fault;
use crate::io::store::Location;
use crate::record::Reject;
use crate::stages::gates::claims::ClaimCheckers;
use crate::state::checkpoint::{StateHandle, StateRegistry};
use crate::state::metrics::Metrics;

/// The worker's embedder session, shared by the stages that score meaning.
pub type SharedEmbedder = Rc<RefCell<Embedder>>;

/// Where a worker writes its outputs.
#[derive(Clone, Debug)]
pub struct OutputTarget {
    pub location: Location,
    pub runtime: Handle,
}

/// A worker's context for its stages (see the module docs). Clones share everything.
#[derive(Clone, Default)]
pub struct StageContext {
    pub states: Option<StateRegistry>,
    pub metrics: Metrics,
    pub errors: Arc<Mutex<Vec<String>>>,
    /// The kind of the first failure in `errors`, when the stage that reported it said.
    pub first_fault: Arc<OnceLock<Option<Fault>>>,
    pub tokenizer: Option<Arc<Tokenizer>>,
    pub output: Option<OutputTarget>,
    pub embedder: Option<SharedEmbedder>,
    /// The worker's models for the claim-reading gates (`lm`, `entailment`) the plan names.
    pub checkers: ClaimCheckers,
}

impl StageContext {
    /// A context whose stages register their state in `states`.
    pub fn checkpointed(states: &StateRegistry) -> Self {
        StageContext { states: Some(states.clone()), ..Default::default() }
    }

    pub fn with_tokenizer(mut self, tokenizer: Arc<Tokenizer>) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    pub fn with_output(mut self, location: Location, runtime: Handle) -> Self {
        self.output = Some(OutputTarget { location, runtime });
        self
    }

    /// A context whose claim-reading gates read with `checkers`.
    pub fn with_checkers(self, checkers: ClaimCheckers) -> Self {
        StageContext { checkers, ..self }
    }

    /// A context whose meaning gates use `embedder`.
    pub fn with_embedder(self, embedder: Option<Embedder>) -> Self {
        StageContext { embedder: embedder.map(|e| Rc::new(RefCell::new(e))), ..self }
    }

    /// Registers a stage's state under `name` if the dataflow is checkpointed.
    pub fn register(&self, name: &str, state: StateHandle) {
        if let Some(s) = &self.states {
            s.register(name, state);
        }
    }

    /// Whether the job stopped at its last checkpoint: a stage must then not flush open state
    /// into the output when its input closes.
    pub fn is_abandoned(&self) -> bool {
        self.states.as_ref().is_some_and(StateRegistry::is_abandoned)
    }

    /// Reports a failure that must fail the run.
    pub fn fail(&self, message: impl Into<String>) {
        self.report(None, message.into());
    }

    /// Reports a failure of a known kind (reading input, running a model, writing output), which
    /// a front end can raise as that kind.
    pub fn fail_as(&self, fault: Fault, message: impl Into<String>) {
        self.report(Some(fault), message.into());
    }

    fn report(&self, fault: Option<Fault>, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.is_empty() {
            let _ = self.first_fault.set(fault);
        }
        errors.push(message);
    }

    /// The first failure a stage reported, if any.
    pub fn first_error(&self) -> Option<String> {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).first().cloned()
    }

    /// The first failure a stage reported, with its kind when it was given.
    pub fn first_failure(&self) -> Option<(Option<Fault>, String)> {
        self.first_error().map(|e| (self.first_fault.get().copied().flatten(), e))
    }

    /// Counts a reject under `rejects.<class>` (the reason's text before its first `:`).
    pub fn count_reject(&self, r: &Reject) {
        self.metrics.add(&format!("rejects.{}", r.class()), 1);
    }

    /// The worker's tokenizer, or a failure reported for `stage`.
    pub fn tokenizer_for(&self, stage: &str) -> Option<Arc<Tokenizer>> {
        let t = self.tokenizer.clone();
        if t.is_none() {
            self.fail(format!("the {stage} stage needs a tokenizer in its context"));
        }
        t
    }

    /// The worker's output location, or a failure reported for `stage`.
    pub fn output_for(&self, stage: &str) -> Option<OutputTarget> {
        let t = self.output.clone();
        if t.is_none() {
            self.fail(format!("the {stage} stage needs an output location in its context"));
        }
        t
    }
}

/// A stream that consumes `input` and gives nothing: what a stage returns when it cannot run
/// (it has reported why to [`StageContext::fail`]).
pub fn nothing<'scope, T, D, O>(input: StreamVec<'scope, T, D>, name: &str) -> StreamVec<'scope, T, O>
where
    T: Timestamp,
    D: Clone + 'static,
    O: Clone + 'static,
{
    input.unary::<CapacityContainerBuilder<Vec<O>>, _, _, _>(Pipeline, name, |_, _| {
        |input, _output| input.for_each(|_, _| {})
    })
}

#[cfg(test)]
mod tests {
    use super::{Fault, StageContext};

    #[test]
    fn the_first_failure_keeps_the_kind_its_stage_gave_it() {
        let ctx = StageContext::default();
        assert_eq!(ctx.first_failure(), None);
        ctx.fail_as(Fault::Output, "writing shard 3: disk full");
        ctx.fail("a consequence");
        ctx.fail_as(Fault::Model, "later");
        assert_eq!(ctx.first_failure(), Some((Some(Fault::Output), "writing shard 3: disk full".into())));
        let plain = StageContext::default();
        plain.fail("no kind");
        plain.fail_as(Fault::Input, "later");
        assert_eq!(plain.first_failure(), Some((None, "no kind".into())), "the kind is the first failure's");
    }
}
