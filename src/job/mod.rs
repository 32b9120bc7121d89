//! A job: the output taken ([`output`]), the plan run as a timely dataflow over the input
//! segment by segment ([`run`], [`worker`], [`feed`], [`segment`], [`follow`]), checkpoints
//! committed ([`checkpoint`]), the rephrase stages attached ([`wrap`]), several processes
//! ([`cluster`]), progress shown ([`progress`]); `wrapflow status` ([`status`]) and `wrapflow remix`
//! ([`remix`]).

pub mod checkpoint;
pub mod cluster;
pub mod context;
pub mod dataflow;
pub mod feed;
pub mod files;
pub mod follow;
pub mod output;
pub mod progress;
pub mod remix;
pub mod run;
pub mod segment;
pub mod session;
pub mod status;
pub mod watch;
pub mod worker;
pub mod wrap;
