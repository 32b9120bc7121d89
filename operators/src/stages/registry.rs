//! The document stages a plan can name (`STAGE name WITH (...)`), declared in one list with
//! [`document_stages!`](crate::stages): each entry builds its stage from the statement's options.

use serde_json::Value;
use timely::dataflow::StreamVec;

use crate::record::Document;
use crate::stages::context::StageContext;

/// Builds a document stage on a job's stream from the options of its `STAGE` statement.
pub type BuildFn = for<'s> fn(StreamVec<'s, u64, Document>, &Value, &StageContext) -> StreamVec<'s, u64, Document>;

/// A document stage a plan can name.
pub struct DocumentStage {
    pub name: &'static str,
    /// Checks the statement's options (a plan error names what is wrong).
    pub check: fn(&Value) -> Result<(), String>,
    pub build: BuildFn,
}

/// The registered stage called `name`, or an error that lists them.
pub fn document_stage(name: &str) -> Result<&'static DocumentStage, String> {
    let all = crate::stages::DOCUMENT_STAGES;
    all.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        format!("unknown stage `{name}` (known: {})", names.join(", "))
    })
}

/// Declares each stage's module and its registry entry (see `stages/mod.rs`).
macro_rules! document_stages {
    ($($module:ident :: $method:ident ( $config:ident )),* $(,)?) => {
        $(pub mod $module;)*

        /// Every document stage a plan can name, in declaration order.
        pub static DOCUMENT_STAGES: &[registry::DocumentStage] = &[$(registry::DocumentStage {
            name: stringify!($method),
            check: |options| {
                serde_json::from_value::<$module::$config>(options.clone()).map(|_| ()).map_err(|e| e.to_string())
            },
            build: {
                fn build<'s>(
                    docs: timely::dataflow::StreamVec<'s, u64, crate::record::Document>,
                    options: &serde_json::Value,
                    ctx: &context::StageContext,
                ) -> timely::dataflow::StreamVec<'s, u64, crate::record::Document> {
                    #[allow(unused_imports)]
                    use $module::*;
                    match serde_json::from_value::<$config>(options.clone()) {
                        Ok(config) => docs.$method(&config, ctx),
                        Err(e) => {
                            ctx.fail(format!("STAGE {}: {e}", stringify!($method)));
                            context::nothing(docs, "BadStage")
                        }
                    }
                }
                build
            },
        }),*];
    };
}
