//! `wrapflow judge`: a plan's gates on (source, rewrite) pairs that exist already (a yardstick,
//! another tool's rephrasings), one verdict per pair as a run would give it.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, bail};
use wrapflow_operators::engine::score::lm_grounding;
use wrapflow_operators::engine::{Decoder, Embedder, SessionConfig, cosine};
use wrapflow_operators::stages::gates::{Verdict, strip_chatter};

use crate::cli::{PlanArgs, out};
use crate::plan::Plan;

/// Reads JSON lines with `source`, `rewrite` and `style` (and any `pair` id, echoed back), and
/// prints for each `{"pair", "style", "accepted", "reason", "text", "cosine", "gates",
/// "grounding"}`: the plan's verdict (its styles, its `GATES`, its embedder) and the grounding
/// scores the gates measured (of the kept text when accepted), whether or not a gate reads them;
/// with `lm` (a model directory), each claim of the rewrite as that model reads it with and
/// without the source ([`lm_grounding`]), under `"lm"`.
pub fn run(plan: &PlanArgs, pairs: &str, lm: Option<&str>) -> anyhow::Result<()> {
    let p = Plan::load(&plan.plan, &plan.sets)?;
    let embedder = match p.gates.embedder.as_str() {
        "" => None,
        dir => Some(Rc::new(RefCell::new(
            Embedder::load(Path::new(dir), &SessionConfig::default())
                .with_context(|| format!("loading the embedder {dir}"))?,
        ))),
    };
    let mut reader = match lm {
        Some(dir) => Some(
            Decoder::load(Path::new(dir), &SessionConfig::default())
                .with_context(|| format!("loading the language model {dir}"))?,
        ),
        None => None,
    };
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
        let (source, rewrite, style) = (field("source")?, field("rewrite")?, field("style")?);
        let Some(st) = p.styles.iter().find(|s| s.name == style) else {
            bail!("{pairs}:{}: style {style:?} is not one of the plan's", n + 1);
        };
        let cos = match &embedder {
            Some(e) => {
                let v = e.borrow_mut().embed(&[source, &strip_chatter(rewrite).0])?;
                cosine(&v[0], &v[1]) as f64
            }
            None => f64::NAN,
        };
        let (verdict, cos) = p.gates.judge_text(source, rewrite, false, cos, st, embedder.as_ref());
        let (accepted, reason, text, scores) = match verdict {
            Verdict::Accept { text, scores } => (true, String::new(), text, scores),
            Verdict::Reject { reason, scores } => (false, reason, String::new(), scores),
        };
        let lm = reader.as_mut().map(|dec| lm_grounding(dec, source, rewrite)).transpose()?;
        let row = serde_json::json!({"pair": v.get("pair"), "style": style, "accepted": accepted, "reason": reason,
            "text": text, "cosine": cos.is_finite().then_some(cos), "grounding": &scores.grounding, "gates": scores,
            "lm": lm});
        out(format!("{row}\n"));
    }
    Ok(())
}
