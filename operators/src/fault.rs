//! What a failure is about, for front ends that sort errors by kind (the Python package's
//! exception classes). [`Fault::tag`] marks an error where it arises without changing what it
//! says; a stage reports a failure of a kind with [`crate::StageContext::fail_as`]. Errors the
//! plan names are the `wrapflow` crate's `PlanError`s, which front ends look for first.

/// The kinds of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The sources: listing or reading them.
    Input,
    /// A model or tokenizer: loading or running it.
    Model,
    /// The output: claiming it, writing shards, checkpoints or the manifest.
    Output,
}

impl Fault {
    /// `e`, marked as this kind of fault; its message and causes stay as they were.
    pub fn tag(self, e: anyhow::Error) -> anyhow::Error {
        anyhow::Error::new(Tagged { fault: self, inner: e })
    }

    /// The kind `e` was marked with, if any layer of it was.
    pub fn of(e: &anyhow::Error) -> Option<Fault> {
        e.chain().find_map(|c| c.downcast_ref::<Tagged>()).map(|t| t.fault)
    }
}

/// An error and its kind: displays as the error's own top message, with the same causes below.
#[derive(Debug)]
struct Tagged {
    fault: Fault,
    inner: anyhow::Error,
}

impl std::fmt::Display for Tagged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Tagged {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.chain().nth(1)
    }
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn a_tagged_error_says_what_it_said_and_keeps_its_kind_under_context() {
        let e = anyhow::anyhow!("disk full").context("writing shard 3");
        let said = format!("{e:#}");
        let tagged = Fault::Output.tag(e);
        assert_eq!(format!("{tagged:#}"), said);
        let wrapped = tagged.context("worker 0");
        assert_eq!(format!("{wrapped:#}"), format!("worker 0: {said}"));
        assert_eq!(Fault::of(&wrapped), Some(Fault::Output));
        assert_eq!(Fault::of(&anyhow::anyhow!("plain")), None);
    }
}
