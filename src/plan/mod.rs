//! Plans: SQL files that declare a pipeline.
//!
//! A plan is a sequence of `;`-terminated statements. DataFusion statements (`CREATE EXTERNAL
//! TABLE`, `CREATE VIEW`, a `SELECT`) define sources, filters and the dedup key; wrapflow
//! statements ([`stage`]) declare the pipeline. `${name}` is replaced by a parameter value from
//! `--set name=value` or `PARAM name DEFAULT value`. See `plans/README.md` for the language.

mod parse;
mod rephrase;
pub mod secrets;
pub mod stage;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wrapflow_operators::stages::dedup::near::NearDupConfig;
use wrapflow_operators::stages::gates::{GATES, GateConfig};
use wrapflow_operators::stages::styles::{Style, builtin};
use wrapflow_operators::{ChunkConfig, MixConfig, MixStageConfig, Mixture, SinkConfig};

use parse::{Parts, parameters, resolve_styles};
use stage::RephraseSpec;
use text::{Pos, Substituted, param_uses, pos_of, split_statements};

/// An error in a plan, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for PlanError {}

/// A DataFusion statement of the plan.
#[derive(Clone, Debug)]
pub struct SqlStatement {
    pub sub: Substituted,
    /// Plan offset of the statement's first character.
    pub at: usize,
}

/// What enters the dataflow: a table or view, or a query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum InputSpec {
    Relation(String),
    Query(String),
}

/// The sink's location, settings, store options and what the dataset card says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SinkSpec {
    pub url: String,
    pub config: SinkConfig,
    pub store: BTreeMap<String, String>,
    pub card: CardSpec,
}

/// What the dataset card (`README.md` in the output) says beyond what the run measured: the
/// SINK options `license` (a Hugging Face licence id such as `cc-by-4.0`; `unknown` when not
/// given), `pretty_name`, `description` and `language` (comma-separated codes, e.g. `en`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CardSpec {
    pub license: String,
    pub pretty_name: String,
    pub description: String,
    pub language: String,
}

impl CardSpec {
    /// The SINK options that belong to the card.
    pub const OPTIONS: [&str; 4] = ["license", "pretty_name", "description", "language"];
}

/// A parsed, parameter-resolved plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub file: String,
    pub source: String,
    /// blake3 of the plan text, as `blake3:<hex>`.
    pub hash: String,
    pub params: BTreeMap<String, String>,
    /// Parameters whose values are credentials: `PARAM name SECRET`, a name that says so, or a
    /// use as a credential option's value. Redacted everywhere; not part of the run's identity.
    pub secrets: BTreeSet<String>,
    pub sql: Vec<SqlStatement>,
    pub tokenizer: Option<String>,
    pub input: (InputSpec, usize),
    pub dedup: Option<(String, usize)>,
    /// MinHash near-duplicate dedup, after exact dedup.
    pub neardup: Option<(NearDupConfig, usize)>,
    pub chunk: (ChunkConfig, usize),
    /// The rephrase stages (`REPHRASE`, each with its model and styles), in plan order; none
    /// when the plan does not rephrase.
    pub rephrase: Vec<(RephraseSpec, usize)>,
    /// Every style the plan rephrases, REPHRASE after REPHRASE: the fan-out's and reports' order.
    pub styles: Vec<Style>,
    pub gates: GateConfig,
    pub sink: (SinkSpec, usize),
    /// Training mixtures (`MIX`), in plan order, with where each is declared.
    pub mixes: Vec<(String, MixConfig, usize)>,
    /// Registered stages (`STAGE name WITH (...)`) in plan order; each runs where its records
    /// flow (documents between dedup and chunk, chunks after chunking).
    pub stages: Vec<(String, Value, usize)>,
}

fn first_word(s: &str) -> String {
    s.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("").to_uppercase()
}

impl Plan {
    /// Reads and parses a plan file.
    pub fn load(path: &str, sets: &[(String, String)]) -> Result<Plan, PlanError> {
        let source = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: path.into(),
            pos: None,
            message: format!("cannot read plan: {e}"),
        })?;
        Self::parse(path, &source, sets)
    }

    /// Parses plan text; `file` names it in errors.
    pub fn parse(file: &str, source: &str, sets: &[(String, String)]) -> Result<Plan, PlanError> {
        let err =
            |off: usize, message: String| PlanError { file: file.into(), pos: Some(pos_of(source, off)), message };
        // Before splitting: an open quote would swallow every statement after it.
        if let Some(at) = text::unclosed_quote(source) {
            return Err(err(at, "unterminated string: this quote is never closed".into()));
        }
        let ranges = split_statements(source);
        let (params, secrets) = parameters(file, source, &ranges, sets)?;
        let mut parts = Parts::default();
        for &(s, e) in &ranges {
            parts.add(source, (s, e), &params).map_err(|(o, m)| err(o, m))?;
        }
        let end = source.trim_end().len();
        let input = parts.input.take();
        let input =
            input.ok_or_else(|| err(end, "the plan has no input: add `INPUT table_or_view;` or a SELECT".into()))?;
        let mut chunk = parts.chunk.take().ok_or_else(|| err(end, "the plan has no CHUNK stage".into()))?;
        let sink = parts.sink.take().ok_or_else(|| err(end, "the plan has no SINK: add `SINK '${output}';`".into()))?;
        if chunk.0.tokenizer.is_none() {
            chunk.0.tokenizer = parts.tokenizer.clone();
        }
        if chunk.0.tokenizer.is_none() {
            return Err(err(
                chunk.1,
                "CHUNK needs a tokenizer: add `TOKENIZER 'path/tokenizer.json';` or CHUNK WITH (tokenizer = '...')"
                    .into(),
            ));
        }
        let styles = resolve_styles(&parts.rephrase, &parts.user_styles).map_err(|(o, m)| err(o, m))?;
        let gates = parts.gates.take().unwrap_or_default();
        check_settings(&sink, &parts.rephrase, &gates).map_err(|(at, m)| err(at, m))?;
        Ok(Plan {
            file: file.into(),
            source: source.into(),
            hash: format!("blake3:{}", blake3::hash(source.as_bytes()).to_hex()),
            params,
            secrets,
            sql: parts.sql,
            tokenizer: parts.tokenizer,
            input,
            dedup: parts.dedup,
            neardup: parts.neardup,
            chunk,
            rephrase: parts.rephrase,
            styles,
            gates,
            sink,
            mixes: parts.mixes,
            stages: parts.stages,
        })
    }

    /// The styles one of the plan's REPHRASEs writes, in its order.
    pub fn styles_of(&self, spec: &RephraseSpec) -> Vec<Style> {
        let names = spec.style_names();
        self.styles.iter().filter(|s| names.contains(&s.name)).cloned().collect()
    }

    /// The plan's mixtures, checked against the styles it rephrases (loads their tokenizers).
    pub fn mixtures(&self) -> Result<Vec<Mixture>, PlanError> {
        let styles: Vec<String> = self.styles.iter().map(|s| s.name.clone()).collect();
        self.mixes
            .iter()
            .map(|(name, cfg, at)| {
                Mixture::new(name, cfg.clone(), &styles).map_err(|e| self.error_at(*at, format!("MIX {name}: {e:#}")))
            })
            .collect()
    }

    /// The mix stage's settings: the plan's mixtures and the styles it rephrases.
    pub fn mix_stage(&self) -> MixStageConfig {
        MixStageConfig {
            mixtures: self.mixes.iter().map(|(name, cfg, _)| (name.clone(), cfg.clone())).collect(),
            styles: self.styles.iter().map(|s| s.name.clone()).collect(),
        }
    }

    /// The parameters as they may be shown: secret values masked.
    pub fn shown_params(&self) -> BTreeMap<String, String> {
        self.params
            .iter()
            .map(|(k, v)| {
                let v = if self.secrets.contains(k) { crate::plan::secrets::MASK.to_string() } else { v.clone() };
                (k.clone(), crate::plan::secrets::redact(&v).into_owned())
            })
            .collect()
    }

    /// What makes two runs the same run: the plan text and every parameter value except secrets
    /// (a rotated key resumes the same run), as `blake3:<hex>`.
    pub fn identity(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.source.as_bytes());
        for (k, v) in self.params.iter().filter(|(k, _)| !self.secrets.contains(*k)) {
            h.update(format!("\0{k}={v}").as_bytes());
        }
        format!("blake3:{}", h.finalize().to_hex())
    }

    /// An error at a plan offset.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> PlanError {
        PlanError { file: self.file.clone(), pos: Some(pos_of(&self.source, offset)), message: message.into() }
    }

    /// An error of a DataFusion statement: at the line and column DataFusion names, mapped back
    /// to the plan, or at the statement's start.
    pub fn sql_error(&self, stmt: &SqlStatement, message: impl fmt::Display) -> PlanError {
        let message = message.to_string();
        let offset = parse_line_col(&message)
            .map(|(l, c)| stmt.sub.plan_offset(text::offset_of(&stmt.sub.text, l, c)))
            .unwrap_or(stmt.at);
        // A value that came from a parameter: say which one, since the plan text shows `${name}`.
        let from_param =
            param_uses(&self.source[offset..]).first().filter(|(at, _)| *at == 0).map(|(_, n)| n.clone()).or_else(
                || {
                    self.params
                        .iter()
                        .filter(|(k, v)| !self.secrets.contains(*k) && !v.is_empty() && !v.contains(' '))
                        .find(|(_, v)| {
                            let word = |c: char| c.is_alphanumeric() || "_.-/".contains(c);
                            message.split(|c: char| !word(c)).any(|w| w.trim_end_matches('.') == v.as_str())
                        })
                        .map(|(k, _)| k.clone())
                },
            );
        match from_param {
            Some(n) => {
                let v = self.shown_params().remove(&n).unwrap_or_default();
                self.error_at(offset, format!("{message} (parameter `{n}` = {v:?})"))
            }
            None => self.error_at(offset, message),
        }
    }

    /// The SQL that feeds the dataflow: the input with the columns it needs and the dedup key.
    pub fn input_query(&self) -> String {
        let from = match &self.input.0 {
            InputSpec::Relation(r) => r.clone(),
            InputSpec::Query(q) => format!("({q}) AS __wrapflow_input"),
        };
        let key = match &self.dedup {
            Some((expr, _)) => format!(", CAST(({expr}) AS VARCHAR) AS __wrapflow_dedup_key"),
            None => String::new(),
        };
        format!("SELECT id, text, source_file, source_line{key} FROM {from}")
    }
}

/// Value ranges a plan's stages need, checked before anything runs.
fn check_settings(
    sink: &(SinkSpec, usize),
    rephrase: &[(RephraseSpec, usize)],
    gates: &GateConfig,
) -> Result<(), (usize, String)> {
    let (spec, at) = sink;
    if spec.url.trim().is_empty() {
        return Err((*at, "SINK: the output location is empty".into()));
    }
    if spec.config.shard_rows == 0 {
        return Err((*at, "SINK: shard_rows must be at least 1".into()));
    }
    for (r, at) in rephrase {
        let bad = |m: String| Err((*at, format!("REPHRASE: {m}")));
        if !(r.temperature.is_finite() && r.temperature >= 0.0) {
            return bad(format!("temperature {} must be 0 (greedy) or more", r.temperature));
        }
        if !(r.retry_temperature.is_finite() && r.retry_temperature >= 0.0) {
            return bad(format!("retry_temperature {} must be 0 or more", r.retry_temperature));
        }
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", r.top_p));
        }
        if r.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if r.concurrency == 0 {
            return bad("concurrency must be at least 1".into());
        }
        let http = r.endpoint.starts_with("http://") || r.endpoint.starts_with("https://");
        if !r.endpoint.is_empty() && !http {
            return bad("endpoint must be an http:// or https:// URL".into());
        }
        if !(r.context_weight.is_finite() && r.context_weight >= 0.0) {
            return bad(format!("context_weight {} must be 0 (off) or more", r.context_weight));
        }
        if r.context_weight > 0.0 && !r.endpoint.is_empty() {
            return bad(
                "context_weight needs the model in this process: a server cannot decode against a contrast".into()
            );
        }
        if !r.api_key_env.is_empty() && !r.api_key_file.is_empty() {
            return bad("give the API key with api_key_env or api_key_file, not both".into());
        }
    }
    if !(-1.0..=1.0).contains(&gates.min_cosine) {
        return Err((sink.1, format!("GATES: min_cosine {} must be between -1 and 1", gates.min_cosine)));
    }
    Ok(())
}

/// A `STYLE name WITH (...)`: the options over the built-in style of that name, if any.
fn resolve_style(name: &str, options: serde_json::Map<String, Value>) -> Result<Style, String> {
    let mut base = match builtin(name) {
        Some(b) => serde_json::to_value(b).expect("styles serialize"),
        None => serde_json::json!({ "name": name }),
    };
    for (k, v) in options {
        if k == "name" {
            return Err("STYLE: the name comes after STYLE, not in WITH".into());
        }
        base[k] = v;
    }
    let style: Style = serde_json::from_value(base).map_err(|e| format!("STYLE {name}: {e}"))?;
    if !style.user.contains("{chunk}") {
        return Err(format!("STYLE {name}: `user` must contain {{chunk}}, where the source text goes"));
    }
    for g in style.gates.iter().flatten() {
        if !GATES.contains(&g.as_str()) {
            return Err(format!("STYLE {name}: unknown gate `{g}` (gates: {})", GATES.join(", ")));
        }
    }
    if !(0.0..=1.0).contains(&style.rate) {
        return Err(format!("STYLE {name}: rate {} is not between 0 and 1", style.rate));
    }
    Ok(style)
}

/// `Line: L, Column: C` in a sqlparser message.
fn parse_line_col(msg: &str) -> Option<(usize, usize)> {
    let l = msg.find("Line: ")? + 6;
    let line: usize = msg[l..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let c = msg[l..].find("Column: ")? + l + 8;
    let col: usize = msg[c..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((line, col))
}

#[cfg(test)]
mod tests;
