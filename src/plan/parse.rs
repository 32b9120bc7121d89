//! Reading a plan's statements: parameters first, then each statement into its part of the plan,
//! then the styles its REPHRASEs list.

use std::collections::{BTreeMap, BTreeSet};

use wrapflow_operators::stages::dedup::near::NearDupConfig;
use wrapflow_operators::stages::gates::GateConfig;
use wrapflow_operators::stages::styles::{BUILTIN, Style, builtin};
use wrapflow_operators::{ChunkConfig, MixConfig};

use crate::plan::stage::{KEYWORDS, RephraseSpec, Stage, StageError, parse_stage};
use crate::plan::text::{Substituted, param_uses, pos_of, substitute};
use crate::plan::{InputSpec, PlanError, SinkSpec, SqlStatement, first_word, resolve_style, secrets};

/// The plan's parameters: `PARAM` defaults, then `--set` values (each must name a declared or
/// used parameter); and the names of those that hold secrets, whose values are registered for
/// redaction.
pub(super) fn parameters(
    file: &str,
    source: &str,
    ranges: &[(usize, usize)],
    sets: &[(String, String)],
) -> Result<(BTreeMap<String, String>, BTreeSet<String>), PlanError> {
    let err = |off: usize, message: String| PlanError { file: file.into(), pos: Some(pos_of(source, off)), message };
    let mut params = BTreeMap::new();
    let mut declared = Vec::new();
    let mut secrets = BTreeSet::new();
    for &(s, e) in ranges {
        if first_word(&source[s..e]) != "PARAM" {
            continue;
        }
        match parse_stage(&source[s..e]).map_err(|(o, m)| err(s + o, m))? {
            Stage::Param { name, default, secret } => {
                if declared.contains(&name) {
                    return Err(err(s, format!("PARAM {name} appears twice")));
                }
                if let Some(d) = default {
                    params.insert(name.clone(), d);
                }
                if secret {
                    secrets.insert(name.clone());
                }
                declared.push(name);
            }
            _ => unreachable!("PARAM parses as a parameter"),
        }
    }
    let used: Vec<String> = param_uses(source).into_iter().map(|(_, n)| n).collect();
    for (k, v) in sets {
        if !declared.contains(k) && !used.contains(k) {
            let mut known: Vec<&String> = declared.iter().chain(&used).collect();
            known.sort();
            known.dedup();
            return Err(PlanError {
                file: file.into(),
                pos: None,
                message: format!("--set {k}: the plan has no parameter `{k}` (it has: {known:?})"),
            });
        }
        params.insert(k.clone(), v.clone());
    }
    secrets.extend(secrets::credential_params(source, &params));
    for name in &secrets {
        if let Some(v) = params.get(name) {
            crate::plan::secrets::register(v);
        }
    }
    Ok((params, secrets))
}

/// The statements of a plan, as they are read (each at its byte offset).
#[derive(Default)]
pub(super) struct Parts {
    pub(super) sql: Vec<SqlStatement>,
    pub(super) tokenizer: Option<String>,
    pub(super) input: Option<(InputSpec, usize)>,
    pub(super) dedup: Option<(String, usize)>,
    pub(super) neardup: Option<(NearDupConfig, usize)>,
    pub(super) chunk: Option<(ChunkConfig, usize)>,
    pub(super) sink: Option<(SinkSpec, usize)>,
    pub(super) rephrase: Vec<(RephraseSpec, usize)>,
    pub(super) gates: Option<GateConfig>,
    pub(super) mixes: Vec<(String, MixConfig, usize)>,
    pub(super) stages: Vec<(String, serde_json::Value, usize)>,
    pub(super) user_styles: BTreeMap<String, (Style, usize)>,
}

impl Parts {
    /// Adds the statement at `(s, e)` with its parameters substituted.
    pub(super) fn add(
        &mut self,
        source: &str,
        (s, e): (usize, usize),
        params: &BTreeMap<String, String>,
    ) -> Result<(), StageError> {
        let word = first_word(&source[s..e]);
        if word == "PARAM" {
            return Ok(());
        }
        let sub = substitute(source, (s, e), params)?;
        if !KEYWORDS.contains(&word.as_str()) {
            return self.add_sql(&word, sub, s);
        }
        let stage = parse_stage(&sub.text).map_err(|(o, m)| (sub.plan_offset(o), m))?;
        match stage {
            Stage::Param { .. } => unreachable!("handled above"),
            Stage::Tokenizer(p) => put(&mut self.tokenizer, p, "TOKENIZER", s)?,
            Stage::Input(r) => {
                if self.input.replace((InputSpec::Relation(r), s)).is_some() {
                    return Err((s, "the plan already has an input (INPUT or a query)".into()));
                }
            }
            Stage::Dedup { expr } => put(&mut self.dedup, (expr, s), "DEDUP", s)?,
            Stage::NearDup(c) => put(&mut self.neardup, (c, s), "NEARDUP", s)?,
            Stage::Chunk(c) => put(&mut self.chunk, (c, s), "CHUNK", s)?,
            Stage::Sink { url, config, store, card } => {
                put(&mut self.sink, (SinkSpec { url, config, store, card }, s), "SINK", s)?
            }
            Stage::Rephrase(r) => self.rephrase.push((r, s)),
            Stage::Gates(g) => put(&mut self.gates, g, "GATES", s)?,
            Stage::Named { name, options } => self.stages.push((name, options, s)),
            Stage::Mix { name, config } => {
                if self.mixes.iter().any(|m| m.0 == name) {
                    return Err((s, format!("MIX {name} appears twice")));
                }
                self.mixes.push((name, config, s));
            }
            Stage::Style { name, options } => {
                let style = resolve_style(&name, options).map_err(|m| (s, m))?;
                if self.user_styles.insert(name.clone(), (style, s)).is_some() {
                    return Err((s, format!("STYLE {name} appears twice")));
                }
            }
        }
        Ok(())
    }

    /// A SQL statement: the input query, or a definition DataFusion runs before it.
    fn add_sql(&mut self, word: &str, sub: Substituted, s: usize) -> Result<(), StageError> {
        if matches!(word, "SELECT" | "WITH" | "VALUES") {
            if self.input.is_some() {
                return Err((s, "the plan already has an input (INPUT or a query)".into()));
            }
            self.input = Some((InputSpec::Query(sub.text.clone()), s));
        } else if matches!(word, "CREATE" | "SET") {
            self.sql.push(SqlStatement { sub, at: s });
        } else {
            // DataFusion would run it (a COPY writes files) but its result would go nowhere.
            return Err((
                s,
                format!(
                    "unsupported statement {word}: a plan defines sources and views (CREATE EXTERNAL TABLE, CREATE VIEW), its input (INPUT or a SELECT) and stages; output goes through SINK and MIX"
                ),
            ));
        }
        Ok(())
    }
}

/// Sets a statement that a plan has at most once.
fn put<T>(slot: &mut Option<T>, value: T, name: &str, at: usize) -> Result<(), StageError> {
    match slot.replace(value) {
        Some(_) => Err((at, format!("{name} appears twice"))),
        None => Ok(()),
    }
}

/// The styles the plan's REPHRASEs list, in plan order, from its `STYLE` statements or the
/// built-in ones. Each style has one REPHRASE (one model writes it), so a row's style names its
/// model, its journal entry and its place in the mixtures.
pub(super) fn resolve_styles(
    rephrase: &[(RephraseSpec, usize)],
    user_styles: &BTreeMap<String, (Style, usize)>,
) -> Result<Vec<Style>, StageError> {
    if rephrase.is_empty() {
        return match user_styles.values().next() {
            Some((_, at)) => Err((*at, "STYLE without a REPHRASE stage that uses it".into())),
            None => Ok(Vec::new()),
        };
    }
    let mut styles = Vec::new();
    for (r, at) in rephrase {
        if r.model.is_empty() {
            return Err((
                *at,
                "REPHRASE needs a model: REPHRASE WITH (model = 'models/...'), or with endpoint = '...' its served name"
                    .into(),
            ));
        }
        let before = styles.len();
        for name in r.style_names() {
            if styles[..before].iter().any(|x: &Style| x.name == name) {
                return Err((*at, format!("style `{name}` is rephrased by an earlier REPHRASE: each style has one")));
            }
            if styles[before..].iter().any(|x: &Style| x.name == name) {
                return Err((*at, format!("style `{name}` is listed twice")));
            }
            styles.push(style(&name, user_styles, *at)?);
        }
        if styles.len() == before {
            return Err((*at, "REPHRASE lists no styles".into()));
        }
    }
    Ok(styles)
}

/// The plan's `STYLE name` or the built-in one.
fn style(name: &str, user_styles: &BTreeMap<String, (Style, usize)>, at: usize) -> Result<Style, StageError> {
    match user_styles.get(name) {
        Some((st, _)) => Ok(st.clone()),
        None => builtin(name).ok_or_else(|| {
            let mut known: Vec<&str> = BUILTIN.to_vec();
            known.extend(user_styles.keys().map(String::as_str));
            (at, format!("unknown style `{name}` (known: {})", known.join(", ")))
        }),
    }
}
