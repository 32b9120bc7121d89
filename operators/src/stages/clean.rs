//! **Clean whitespace** stage: [`Document`]s in, the same documents with tidy whitespace out.
//!
//! Web text carries layout debris: runs of spaces and tabs, trailing blanks, stacks of empty
//! lines. They cost tokens and shift chunk breaks without adding meaning. This stage trims the
//! end of every line, collapses runs of spaces and tabs inside a line to one space (leading
//! indentation too, when `collapse_spaces`), keeps at most `max_blank_lines` empty lines in a
//! row, and trims the document. A plan names it with `STAGE clean_whitespace WITH (...)`; it runs
//! after dedup, so a document's dedup key is that of its text as read, and the byte ranges of its
//! chunks are offsets into the cleaned text.
//!
//! ```
//! use wrapflow_operators::stages::clean::{CleanConfig, clean};
//! let text = "  Title  \n\n\n\nFirst   line.\t\tMore.   \n";
//! assert_eq!(clean(text, &CleanConfig::default()), "Title\n\nFirst line. More.");
//! ```

use serde::{Deserialize, Serialize};
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;
use timely::progress::Timestamp;

use crate::record::Document;
use crate::stages::context::StageContext;

/// Settings of the clean-whitespace stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CleanConfig {
    /// Empty lines kept in a row (1 keeps paragraphs apart).
    pub max_blank_lines: usize,
    /// Collapse runs of spaces and tabs to one space.
    pub collapse_spaces: bool,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig { max_blank_lines: 1, collapse_spaces: true }
    }
}

/// The text with its whitespace cleaned (see the module docs).
pub fn clean(text: &str, cfg: &CleanConfig) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blanks = 0;
    for line in text.trim().lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blanks += 1;
            if blanks <= cfg.max_blank_lines {
                out.push('\n');
            }
            continue;
        }
        blanks = 0;
        if cfg.collapse_spaces {
            for (i, word) in line.split([' ', '\t']).filter(|w| !w.is_empty()).enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(word);
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

/// Extension trait: the clean-whitespace stage.
pub trait CleanWhitespace<'scope, T: Timestamp> {
    /// Cleans every document's text. Counts `clean_whitespace.changed` (documents whose text
    /// changed) and `clean_whitespace.bytes_removed`.
    fn clean_whitespace(self, config: &CleanConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document>;
}

impl<'scope, T: Timestamp> CleanWhitespace<'scope, T> for StreamVec<'scope, T, Document> {
    fn clean_whitespace(self, config: &CleanConfig, ctx: &StageContext) -> StreamVec<'scope, T, Document> {
        let (cfg, metrics) = (config.clone(), ctx.metrics.clone());
        self.map(move |mut d| {
            let cleaned = clean(&d.text, &cfg);
            if cleaned.len() != d.text.len() || cleaned != d.text {
                metrics.add("clean_whitespace.changed", 1);
                metrics.add("clean_whitespace.bytes_removed", (d.text.len() - cleaned.len()) as u64);
                d.text = cleaned;
            }
            d
        })
    }
}

impl crate::stages::NamedStage for CleanConfig {
    const NAME: &'static str = "clean_whitespace";
    type Record = Document;
    fn apply<'s>(&self, docs: StreamVec<'s, u64, Document>, ctx: &StageContext) -> StreamVec<'s, u64, Document> {
        docs.clean_whitespace(self, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_lines_spaces_and_blank_runs() {
        let cfg = CleanConfig::default();
        assert_eq!(clean("a  b\t c \n \n\n\nd\n", &cfg), "a b c\n\nd");
        assert_eq!(clean("a\n\n\nb", &CleanConfig { max_blank_lines: 0, ..cfg.clone() }), "a\nb");
        assert_eq!(clean("  a   b  ", &CleanConfig { collapse_spaces: false, ..cfg.clone() }), "a   b");
        assert_eq!(clean(" \n\t\n ", &cfg), "");
        let tidy = "One.\n\nTwo three.";
        assert_eq!(clean(tidy, &cfg), tidy, "clean text is left as it is");
    }
}
