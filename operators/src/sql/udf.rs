//! DataFusion SQL functions for pretraining-data filtering.
//!
//! Register them with [`register_all`]; every [`crate::sql::heuristics`] function is available under
//! its own name, plus `c4_clean(text)` ([`crate::sql::c4`]: the text with C4's line rules
//! applied, NULL when C4 drops it) and `token_count(text)` with the plan's tokenizer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> datafusion::error::Result<()> {
//! use datafusion::prelude::SessionContext;
//! let ctx = SessionContext::new();
//! wrapflow_operators::sql::udf::register_all(&ctx, None);
//! let df = ctx
//!     .sql("SELECT word_count('The cat sat.') AS w, dup_ngram_fraction('a b a b', 2) AS d")
//!     .await?;
//! let batches = df.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(()) }
//! ```

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, StringBuilder, UInt64Builder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use tokenizers::Tokenizer;

use crate::model::text::token_bounds::TokenBounds;
use crate::sql::heuristics as h;
use crate::sql::stats::{CLEANED, STATS, TextStats, memoized};

#[derive(Clone)]
enum Kernel {
    F64(fn(&str) -> f64),
    /// A heuristic read off the text's shared counts ([`TextStats`], one walk per text).
    StatF64(fn(&TextStats) -> f64),
    StatU64(fn(&TextStats) -> u64),
    Ngram(fn(&str, usize) -> f64),
    Hash(fn(&str) -> String),
    /// A text in, a text or NULL out.
    Text(fn(&str) -> Option<String>),
    Tokens(Option<TokenBounds>),
}

/// One text function; equality and hashing go by name (names are unique in a session).
#[derive(Clone)]
struct TextUdf {
    name: &'static str,
    kernel: Kernel,
    signature: Signature,
}

impl std::fmt::Debug for TextUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextUdf").field("name", &self.name).finish()
    }
}
impl PartialEq for TextUdf {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for TextUdf {}
impl Hash for TextUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

const STRINGS: [DataType; 3] = [DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View];

impl TextUdf {
    fn new(name: &'static str, kernel: Kernel) -> Self {
        let signature = match kernel {
            Kernel::Ngram(_) => Signature::one_of(
                STRINGS.iter().map(|s| TypeSignature::Exact(vec![s.clone(), DataType::Int64])).collect(),
                Volatility::Immutable,
            ),
            _ => Signature::uniform(1, STRINGS.to_vec(), Volatility::Immutable),
        };
        TextUdf { name, kernel, signature }
    }
}

impl ScalarUDFImpl for TextUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match &self.kernel {
            Kernel::F64(_) | Kernel::StatF64(_) | Kernel::Ngram(_) => DataType::Float64,
            Kernel::StatU64(_) => DataType::UInt64,
            Kernel::Tokens(None) => {
                return plan_err!(
                    "token_count() needs a tokenizer: add TOKENIZER 'path/to/tokenizer.json' to the plan"
                );
            }
            Kernel::Tokens(Some(_)) => DataType::UInt64,
            Kernel::Hash(_) | Kernel::Text(_) => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let text = arrow::compute::cast(&args.args[0].to_array(rows)?, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let n = match (&self.kernel, args.args.get(1)) {
            (Kernel::Ngram(_), Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(n))))) if *n > 0 => *n as usize,
            (Kernel::Ngram(_), _) => return exec_err!("{}(text, n): n must be a positive integer literal", self.name),
            _ => 0,
        };
        let out: ArrayRef = match &self.kernel {
            Kernel::F64(f) => {
                let mut b = Float64Builder::with_capacity(rows);
                text.iter().for_each(|t| b.append_option(t.map(f)));
                Arc::new(b.finish())
            }
            Kernel::Ngram(f) => {
                let mut b = Float64Builder::with_capacity(rows);
                text.iter().for_each(|t| b.append_option(t.map(|t| f(t, n))));
                Arc::new(b.finish())
            }
            Kernel::StatF64(f) => {
                let mut b = Float64Builder::with_capacity(rows);
                memoized(&STATS, text, TextStats::of, |_| 1, |s| b.append_option(s.map(f)));
                Arc::new(b.finish())
            }
            Kernel::StatU64(f) => {
                let mut b = UInt64Builder::with_capacity(rows);
                memoized(&STATS, text, TextStats::of, |_| 1, |s| b.append_option(s.map(f)));
                Arc::new(b.finish())
            }
            Kernel::Hash(f) => {
                let mut b = StringBuilder::with_capacity(rows, rows * 32);
                text.iter().for_each(|t| b.append_option(t.map(f)));
                Arc::new(b.finish())
            }
            Kernel::Text(f) => {
                let mut b = StringBuilder::with_capacity(rows, text.value_data().len());
                // An output weighs 1 plus its KiB in the memo (see `memoized`).
                let weigh = |o: &Option<String>| 1 + o.as_ref().map_or(0, |s| s.len() >> 10);
                memoized(&CLEANED, text, f, weigh, |o| b.append_option(o.and_then(Option::as_deref)));
                Arc::new(b.finish())
            }
            Kernel::Tokens(tok) => {
                let tok = tok.as_ref().expect("return_type rejects a missing tokenizer");
                let mut b = UInt64Builder::with_capacity(rows);
                for t in text.iter() {
                    match t {
                        Some(t) => {
                            let n = tok.count(t).map_err(|e| {
                                datafusion::error::DataFusionError::Execution(format!("token_count: {e}"))
                            })?;
                            b.append_value(n as u64)
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        debug_assert_eq!(out.len(), rows);
        Ok(ColumnarValue::Array(out))
    }
}

/// All wrapflow SQL functions; `token_count` uses `tokenizer` (without one it is a plan error).
pub fn all(tokenizer: Option<Arc<Tokenizer>>) -> Vec<ScalarUDF> {
    use Kernel::*;
    [
        TextUdf::new("word_count", StatU64(|s| s.alnum_words)),
        TextUdf::new("flesch_kincaid_grade", F64(h::flesch_kincaid_grade)),
        TextUdf::new("mean_word_length", StatF64(TextStats::mean_word_length)),
        TextUdf::new("symbol_word_ratio", StatF64(TextStats::symbol_word_ratio)),
        TextUdf::new("alpha_words_ratio", StatF64(TextStats::alpha_words_ratio)),
        TextUdf::new("stopword_count", StatU64(|s| s.stop_words)),
        TextUdf::new("bullet_lines_ratio", StatF64(TextStats::bullet_lines_ratio)),
        TextUdf::new("ellipsis_lines_ratio", StatF64(TextStats::ellipsis_lines_ratio)),
        TextUdf::new("punct_end_lines_ratio", StatF64(TextStats::punct_end_lines_ratio)),
        TextUdf::new("dup_line_fraction", StatF64(TextStats::dup_line_fraction)),
        TextUdf::new("dup_line_char_fraction", StatF64(TextStats::dup_line_char_fraction)),
        TextUdf::new("dup_ngram_fraction", Ngram(h::dup_ngram_fraction)),
        TextUdf::new("top_ngram_fraction", Ngram(h::top_ngram_fraction)),
        TextUdf::new("bad_phrase_lines", StatU64(|s| s.bad_phrase_lines)),
        TextUdf::new("bad_phrase_ratio", StatF64(TextStats::bad_phrase_ratio)),
        TextUdf::new("content_hash", Hash(h::content_hash)),
        TextUdf::new("c4_clean", Text(crate::sql::c4::c4_clean)),
        TextUdf::new("token_count", Tokens(tokenizer.map(TokenBounds::new))),
    ]
    .into_iter()
    .map(ScalarUDF::new_from_impl)
    .collect()
}

/// Registers [`all`] in a session.
pub fn register_all(ctx: &SessionContext, tokenizer: Option<Arc<Tokenizer>>) {
    for f in all(tokenizer) {
        ctx.register_udf(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, UInt64Array};

    async fn query(ctx: &SessionContext, sql: &str) -> arrow::array::RecordBatch {
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::compute::concat_batches(&b[0].schema(), &b).unwrap()
    }

    #[tokio::test]
    async fn udfs_in_sql_match_hand_values() {
        let ctx = SessionContext::new();
        register_all(&ctx, Some(Arc::new(crate::testkit::tiny_tokenizer())));
        let b = query(
            &ctx,
            "SELECT word_count(t) AS w, dup_ngram_fraction(t, 2) AS d, content_hash(t) AS h, \
             token_count(t) AS n, c4_clean(t) AS c FROM (VALUES ('a b c a b c d'), (NULL)) AS v(t)",
        )
        .await;
        let w = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(w.value(0), 7);
        assert!(w.is_null(1), "NULL text gives NULL");
        let d = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
        assert!((d.value(0) - 3.0 / 7.0).abs() < 1e-12);
        let hsh = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(hsh.value(0), h::content_hash("a b c a b c d"));
        let n = b.column(3).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert!(n.value(0) > 0 && n.value(0) <= 13, "tokens of 13 bytes: {}", n.value(0));
        let c = b.column(4).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(c.is_null(0) && c.is_null(1), "no end mark: C4 drops the text");
    }

    #[tokio::test]
    async fn token_count_without_tokenizer_is_a_plan_error() {
        let ctx = SessionContext::new();
        register_all(&ctx, None);
        let err = ctx.sql("SELECT token_count('x')").await.unwrap_err().to_string();
        assert!(err.contains("TOKENIZER"), "{err}");
        let err = ctx.sql("SELECT dup_ngram_fraction('a b', 0)").await.unwrap().collect().await.unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
