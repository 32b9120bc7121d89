//! What a mixture is: its settings as a plan writes them ([`MixConfig`]), and the checked form
//! the mix operator runs ([`Mixture`]): leaves with target shares, stage names,
//! compiled SQL expressions, the training tokenizer.

use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::stages::mix::row::{self, MixItem};
use crate::stages::mix::scheduler::{Balance, Leaf, Mixer, MixerConfig, Shortfall, Unit, parse_weights};

/// Output formats of a mixture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixFormat {
    #[default]
    Parquet,
    Jsonl,
    /// Megatron-LM's `.bin` + `.idx` indexed dataset ([`crate::io::tokens`]) and a
    /// `.meta.parquet` row per document. `tokens` names it too.
    #[serde(alias = "tokens")]
    Megatron,
}

impl MixFormat {
    /// Extension of a shard's main file.
    pub fn extension(self) -> &'static str {
        match self {
            MixFormat::Parquet => "parquet",
            MixFormat::Jsonl => "jsonl",
            MixFormat::Megatron => "bin",
        }
    }
}

/// Settings of one mixture (`MIX name WITH (...)` in a plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixConfig {
    /// Real:synthetic by tokens, e.g. `1:1` (WRAP), `1:2`, `0:1` (synthetic only).
    pub ratio: String,
    /// Style weights by tokens inside the synthetic part, e.g. `qa:1, medium:2`; empty: every
    /// rephrased style, equally. Styles not listed are left out.
    pub styles: String,
    /// SQL expression naming a row's source (domain), e.g. `split_part(source_file, '/', 1)`.
    pub source: String,
    /// Source weights by tokens, e.g. `news:0.3, encyclopedia:0.7`; needs `source`.
    pub sources: String,
    /// SQL expression giving a row's curriculum stage, e.g. `style` or
    /// `CASE WHEN n_tokens < 100 THEN 'short' ELSE 'long' END`.
    pub stage: String,
    /// The stages in training order; rows of any other stage value are left out (and counted).
    pub stages: String,
    pub balance: Balance,
    pub shortfall: Shortfall,
    /// Passes over a short leaf's rows at most, with `shortfall = repeat`.
    pub max_epochs: u32,
    pub unit: Unit,
    pub shuffle: bool,
    /// Units per leaf among which the next one is drawn.
    pub shuffle_window: usize,
    pub seed: u64,
    /// A stage's shard is written once it holds this many tokens.
    pub shard_tokens: u64,
    pub format: MixFormat,
    /// Training tokenizer (`tokenizer.json`): tokens are counted with it (plus one EOS per
    /// unit). Required by `format = megatron`; without it, the chunker's `n_tokens` count.
    pub tokenizer: String,
    /// The EOS token's text; default: the first of `<|endoftext|>`, `</s>`, `<eos>`, `<|im_end|>`
    /// the tokenizer knows.
    pub eos: String,
    /// Tokens one leaf may buffer while waiting for the others (see [`MixerConfig`]).
    pub max_buffer_tokens: u64,
    /// Shard uploads in flight before the mixer waits.
    pub max_inflight: usize,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            ratio: "1:1".into(),
            styles: String::new(),
            source: String::new(),
            sources: String::new(),
            stage: String::new(),
            stages: String::new(),
            balance: Balance::Global,
            shortfall: Shortfall::Stop,
            max_epochs: 4,
            unit: Unit::Chunk,
            shuffle: true,
            shuffle_window: 256,
            seed: 0,
            shard_tokens: 1_000_000,
            format: MixFormat::Parquet,
            tokenizer: String::new(),
            eos: String::new(),
            max_buffer_tokens: 16_000_000,
            max_inflight: 2,
        }
    }
}

/// A training tokenizer and its EOS.
#[derive(Clone)]
pub struct TrainTokenizer {
    pub tokenizer: Arc<Tokenizer>,
    pub eos: u32,
    pub vocab: usize,
}

/// Settings of the mix stage: the mixtures by name (a plan's `MIX name WITH (...)`) and the
/// styles the plan rephrases, in its order. The stage compiles them with [`Mixture::new`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixStageConfig {
    pub mixtures: Vec<(String, MixConfig)>,
    pub styles: Vec<String>,
}

impl MixStageConfig {
    pub fn compile(&self) -> anyhow::Result<Vec<Mixture>> {
        self.mixtures
            .iter()
            .map(|(name, c)| Mixture::new(name, c.clone(), &self.styles).with_context(|| format!("MIX {name}")))
            .collect()
    }
}

/// A mixture ready to run: its leaves with their target shares and its compiled expressions.
#[derive(Clone)]
pub struct Mixture {
    pub name: String,
    pub config: MixConfig,
    pub leaves: Vec<Leaf>,
    pub stages: Vec<String>,
    pub(crate) source: Option<Arc<dyn PhysicalExpr>>,
    pub(crate) stage: Option<Arc<dyn PhysicalExpr>>,
    pub tokenizer: Option<TrainTokenizer>,
}

impl std::fmt::Debug for Mixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixture").field("name", &self.name).field("leaves", &self.leaves).finish()
    }
}

impl Mixture {
    /// Checks a mixture against the styles the plan rephrases and builds its leaves:
    /// weight = kind share × style share × source share.
    pub fn new(name: &str, config: MixConfig, styles: &[String]) -> anyhow::Result<Mixture> {
        // The name is a folder of the output (`mix/NAME/`): one plain path segment.
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "the mixture name {name:?} must be letters, digits, `_` and `-` (it names the folder mix/{name}/)"
        );
        let (real, synthetic) = config
            .ratio
            .split_once(':')
            .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
            .filter(|(a, b)| a.is_finite() && b.is_finite() && *a >= 0.0 && *b >= 0.0 && a + b > 0.0)
            .with_context(|| format!("ratio `{}`: expected real:synthetic, e.g. 1:1 or 1:2", config.ratio))?;
        let mut style_w = parse_weights(&config.styles).map_err(|e| anyhow::anyhow!("styles: {e}"))?;
        if style_w.is_empty() {
            style_w = styles.iter().map(|s| (s.clone(), 1.0)).collect();
        }
        if let Some(s) = style_w.keys().find(|s| !styles.contains(s)) {
            bail!("styles: `{s}` is not a style the plan rephrases ({})", styles.join(", "));
        }
        if synthetic > 0.0 && style_w.values().sum::<f64>() <= 0.0 {
            bail!("ratio gives synthetic rows a share but the plan rephrases no style with a weight");
        }
        let source_w = parse_weights(&config.sources).map_err(|e| anyhow::anyhow!("sources: {e}"))?;
        if !source_w.is_empty() && config.source.trim().is_empty() {
            bail!("sources needs `source`, the SQL expression that names a row's source");
        }
        if !source_w.is_empty() && source_w.values().sum::<f64>() <= 0.0 {
            bail!("sources: every weight is 0");
        }
        let stages: Vec<String> =
            config.stages.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if config.stage.trim().is_empty() != stages.is_empty() {
            bail!("a curriculum needs both `stage` (a SQL expression) and `stages` (its values in training order)");
        }
        if let Some(d) = stages.iter().enumerate().find(|(i, s)| stages[..*i].contains(s)) {
            bail!("stages: `{}` is listed twice", d.1);
        }
        if config.shard_tokens == 0 {
            bail!("shard_tokens must be > 0");
        }
        if config.shortfall == Shortfall::Repeat && config.max_epochs < 1 {
            bail!("max_epochs must be ≥ 1");
        }
        let tokenizer = if config.tokenizer.is_empty() {
            if config.format == MixFormat::Megatron {
                bail!("format = megatron needs `tokenizer`, the training tokenizer.json");
            }
            None
        } else {
            Some(train_tokenizer(&config.tokenizer, &config.eos)?)
        };
        let total_s: f64 = style_w.values().sum();
        let total_src: f64 = source_w.values().sum();
        let sources: Vec<(String, f64)> = if source_w.is_empty() {
            vec![(String::new(), 1.0)]
        } else {
            source_w.iter().map(|(k, w)| (k.clone(), w / total_src)).collect()
        };
        let mut leaves = Vec::new();
        for (src, sw) in &sources {
            let kind = real / (real + synthetic);
            leaves.push(Leaf { kind: "real".into(), style: String::new(), source: src.clone(), weight: kind * sw });
            // Styles in the plan's order.
            for st in styles.iter().filter(|s| style_w.contains_key(*s)) {
                let w = synthetic / (real + synthetic) * style_w[st] / total_s.max(f64::MIN_POSITIVE) * sw;
                leaves.push(Leaf { kind: "synthetic".into(), style: st.clone(), source: src.clone(), weight: w });
            }
        }
        let compile = |sql: &str| -> anyhow::Result<Option<Arc<dyn PhysicalExpr>>> {
            if sql.trim().is_empty() {
                return Ok(None);
            }
            compile_expr(sql).map(Some)
        };
        Ok(Mixture {
            name: name.into(),
            source: compile(&config.source).context("source")?,
            stage: compile(&config.stage).context("stage")?,
            stages: if stages.is_empty() { vec!["all".into()] } else { stages },
            leaves,
            tokenizer,
            config,
        })
    }

    pub(crate) fn mixer(&self) -> Mixer<MixItem> {
        Mixer::new(MixerConfig {
            leaves: self.leaves.clone(),
            stages: self.stages.len(),
            balance: self.config.balance,
            shortfall: self.config.shortfall,
            max_epochs: self.config.max_epochs,
            shuffle_window: if self.config.shuffle { self.config.shuffle_window.max(1) } else { 0 },
            seed: self.config.seed,
            shard_tokens: self.config.shard_tokens,
            max_buffer_tokens: self.config.max_buffer_tokens,
        })
    }
}

fn train_tokenizer(path: &str, eos: &str) -> anyhow::Result<TrainTokenizer> {
    let tok = crate::stages::chunk::load_tokenizer(std::path::Path::new(path))?;
    let candidates: Vec<&str> =
        if eos.is_empty() { vec!["<|endoftext|>", "</s>", "<eos>", "<|im_end|>"] } else { vec![eos] };
    let Some(id) = candidates.iter().find_map(|t| tok.token_to_id(t)) else {
        bail!("tokenizer {path} has no EOS token among {candidates:?}: name it with eos = '...'");
    };
    Ok(TrainTokenizer { vocab: tok.get_vocab_size(true), eos: id, tokenizer: Arc::new(tok) })
}

/// Compiles a SQL expression over [`row::eval_schema`] (the row's columns), with wrapflow's UDFs.
pub fn compile_expr(sql: &str) -> anyhow::Result<Arc<dyn PhysicalExpr>> {
    let ctx = SessionContext::new();
    crate::sql::udf::register_all(&ctx, None);
    let schema = DFSchema::try_from(row::eval_schema().as_ref().clone())?;
    let expr = ctx.parse_sql_expr(sql, &schema).with_context(|| format!("`{sql}`"))?;
    ctx.create_physical_expr(expr, &schema).with_context(|| format!("`{sql}`"))
}

pub(crate) fn eval_strings(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> anyhow::Result<Vec<Option<String>>> {
    let v = expr.evaluate(batch)?.into_array(batch.num_rows())?;
    let s = arrow::compute::cast(&v, &DataType::Utf8)?;
    let s = s.as_string::<i32>();
    Ok((0..s.len()).map(|i| (!s.is_null(i)).then(|| s.value(i).to_string())).collect())
}
