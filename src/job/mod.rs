//! A job: the output taken ([`output`]), the plan run as a timely dataflow over the input
//! segment by segment ([`run`], [`worker`], [`feed`], [`segment`], [`follow`]), checkpoints
//! committed ([`checkpoint`]), the plan's stages in order ([`pipeline`]), the rephrase stages
//! attached ([`wrap`]), several processes ([`cluster`]), progress shown ([`progress`]);
//! `wrapflow status` ([`status`]) and `wrapflow remix` ([`remix`]).

pub mod checkpoint;
pub mod cluster;
pub mod context;
pub mod dataflow;
pub mod feed;
pub mod files;
pub mod follow;
pub mod options;
pub mod output;
pub(crate) mod pipeline;
pub mod progress;
pub mod remix;
pub mod run;
pub mod segment;
pub mod session;
pub mod status;
pub mod watch;
pub mod worker;
pub mod wrap;

/// What a job's error is about (one definition, in the operators crate: stages report their
/// failures by kind too).
pub use wrapflow_operators::fault::Fault;

/// `e` marked as `fault`, unless the plan names it: a plan error stays one (a tag would hide its
/// type from front ends, which look for it first).
pub fn tag(fault: Fault, e: anyhow::Error) -> anyhow::Error {
    if e.chain().any(|c| c.is::<crate::plan::PlanError>()) { e } else { fault.tag(e) }
}

#[cfg(test)]
mod tests {
    use super::{Fault, tag};

    #[test]
    fn a_plan_error_stays_one_and_other_errors_take_their_kind() {
        let plan = crate::plan::PlanError { file: "p.sql".into(), pos: None, message: "no such table".into() };
        let tagged = tag(Fault::Input, anyhow::Error::new(plan)).context("starting the job");
        assert!(tagged.chain().any(|c| c.is::<crate::plan::PlanError>()), "front ends look for it first");
        assert_eq!(Fault::of(&tagged), None);
        assert_eq!(format!("{tagged:#}"), "starting the job: p.sql: no such table");
        let other = tag(Fault::Input, anyhow::anyhow!("bucket gone"));
        assert_eq!((Fault::of(&other), format!("{other:#}")), (Some(Fault::Input), "bucket gone".into()));
    }
}
