//! `wrapflow judge`: a plan's gates on (source, rewrite) pairs that exist already (a yardstick,
//! another tool's rephrasings), one verdict per pair as a run would give it.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, bail};
use wrapflow_operators::engine::decode::score::lm_grounding;
use wrapflow_operators::engine::{Decoder, Embedder, SessionConfig, cosine};
use wrapflow_operators::stages::gates::claims::ClaimCheckers;
use wrapflow_operators::stages::gates::{Verdict, strip_chatter};

use crate::cli::{PlanArgs, out};
use crate::job::wrap::load_checkers;
use crate::plan::Plan;

/// Reads JSON lines with `source`, `rewrite` and `style` (and any `pair` id, echoed back), and
/// prints each pair's [`Judge::verdict`] with its `pair`.
pub fn run(plan: &PlanArgs, pairs: &str, lm: Option<&str>) -> anyhow::Result<()> {
    let p = Plan::load(&plan.plan, &plan.sets)?;
    let mut judge = Judge::new(&p, lm)?;
    let file = std::fs::File::open(pairs).with_context(|| format!("cannot read {pairs}"))?;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{pairs}:{}: not JSON", n + 1))?;
        let field = |k: &str| {
            v.get(k).and_then(|x| x.as_str()).with_context(|| format!("{pairs}:{}: no string field {k:?}", n + 1))
        };
        let mut row = judge
            .verdict(field("source")?, field("rewrite")?, field("style")?)
            .with_context(|| format!("{pairs}:{}", n + 1))?;
        row.as_object_mut().expect("a verdict is an object").insert("pair".into(), v.get("pair").cloned().into());
        out(format!("{row}\n"));
    }
    Ok(())
}

/// A plan's gates (its styles, its `GATES`, its embedder) over pairs, as a run judges its rows;
/// also `Plan.judge` in Python.
pub struct Judge<'p> {
    plan: &'p Plan,
    embedder: Option<Rc<RefCell<Embedder>>>,
    /// The plan's claim-reading gates' models, and the model `lm` names to measure with.
    checkers: ClaimCheckers,
    reader: Option<Decoder>,
}

impl<'p> Judge<'p> {
    /// Loads the plan's embedder and, with `lm` (a model directory), a language model that reads
    /// each claim with and without its source ([`lm_grounding`]).
    pub fn new(plan: &'p Plan, lm: Option<&str>) -> anyhow::Result<Self> {
        let embedder = match plan.gates.embedder.as_str() {
            "" => None,
            dir => Some(Rc::new(RefCell::new(
                Embedder::load(Path::new(dir), &SessionConfig::default())
                    .with_context(|| format!("loading the embedder {dir}"))?,
            ))),
        };
        let reader = match lm {
            Some(dir) => Some(
                Decoder::load(Path::new(dir), &SessionConfig::default())
                    .with_context(|| format!("loading the language model {dir}"))?,
            ),
            None => None,
        };
        let checkers = load_checkers(&plan.gates, &SessionConfig::default())?;
        Ok(Judge { plan, embedder, checkers, reader })
    }

    /// `{"style", "accepted", "reason", "text", "cosine", "gates", "grounding", "lm"}`: the
    /// plan's verdict on `rewrite` of `source` in `style`, and the grounding scores the gates
    /// measured (of the kept text when accepted) whether or not a gate reads them; `lm` holds the
    /// language model's reading when there is one.
    pub fn verdict(&mut self, source: &str, rewrite: &str, style: &str) -> anyhow::Result<serde_json::Value> {
        let Some(st) = self.plan.styles.iter().find(|s| s.name == style) else {
            bail!("style {style:?} is not one of the plan's");
        };
        let cos = match &self.embedder {
            Some(e) => {
                let v = e.borrow_mut().embed(&[source, &strip_chatter(rewrite).0])?;
                cosine(&v[0], &v[1]) as f64
            }
            None => f64::NAN,
        };
        let (verdict, cos) = self.plan.gates.judge_text(source, rewrite, false, cos, st, self.embedder.as_ref());
        let verdict = self.plan.gates.check_claims(&self.checkers, st, source, verdict);
        let (accepted, reason, text, scores) = match verdict {
            Verdict::Accept { text, scores } => (true, String::new(), text, scores),
            Verdict::Reject { reason, scores } => (false, reason, String::new(), scores),
        };
        let lm = self.reader.as_mut().map(|dec| lm_grounding(dec, source, rewrite)).transpose()?;
        Ok(serde_json::json!({"style": style, "accepted": accepted, "reason": reason, "text": text,
            "cosine": cos.is_finite().then_some(cos), "grounding": &scores.grounding, "gates": scores, "lm": lm}))
    }
}
