//! **Rephrase** (`STYLE`, `REPHRASE`, `GATES`): chunks → fan-out to the styles → rephrase with the
//! worker's backend → gates; accepted rows and gate rejects out (see [`crate::job::wrap`]). A
//! step per REPHRASE, each with its own backend and styles.

use timely::dataflow::operators::Concat;
use wrapflow_operators::stages::gates::GateConfig;
use wrapflow_operators::stages::styles::Style;

use super::{Env, Flow, Line, Step};
use crate::plan::Plan;
use crate::plan::stage::RephraseSpec;

struct Rephrase<'p> {
    plan: &'p Plan,
    spec: &'p RephraseSpec,
    /// Which of the plan's REPHRASEs: its backend in the worker's models.
    index: usize,
}

pub fn steps<'p>(plan: &'p Plan) -> Vec<Box<dyn Step + 'p>> {
    let step = |(index, (spec, _)): (usize, &'p (RephraseSpec, usize))| {
        Box::new(Rephrase { plan, spec, index }) as Box<dyn Step + 'p>
    };
    plan.rephrase.iter().enumerate().map(step).collect()
}

impl Step for Rephrase<'_> {
    fn describe(&self) -> Vec<Line> {
        let (r, styles) = (self.spec, &self.plan.styles_of(self.spec));
        let (model, batch) = match r.remote() {
            Some(c) => (
                format!(
                    "{} at {} ({:?} API)",
                    c.model,
                    wrapflow_operators::engine::backend::remote::endpoint_display(&c.endpoint),
                    c.api
                ),
                format!("concurrency={}", c.concurrency),
            ),
            None => (r.model.clone(), format!("batch_size={}", r.batch_size)),
        };
        vec![
            Line::new("fan-out", format!("each chunk × {} styles{}", styles.len(), style_lines(styles))),
            Line::new(
                "rephrase",
                format!(
                    "model={model} {batch} temperature={} no_repeat_ngram={} retries={} seed={}",
                    r.temperature, r.no_repeat_ngram, r.retries, r.seed
                ),
            ),
        ]
        .into_iter()
        // One GATES serves every REPHRASE: shown after the last.
        .chain((self.index + 1 == self.plan.rephrase.len()).then(|| Line::new("gates", gates(&self.plan.gates))))
        .collect()
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        let Some(backend) = env.backends.get(self.index) else {
            return env.ctx.fail("the plan rephrases but the worker has no model");
        };
        let journal = env.journal.as_ref().map(|j| j.for_stage(self.index));
        let (synthetic, rejects) =
            crate::job::wrap::attach(flow.chunks(), self.spec, self.plan, env.ctx, backend, journal);
        // Beside any rows an earlier step gave.
        flow.synthetic = Some(match flow.synthetic.take() {
            Some(earlier) => earlier.concat(synthetic),
            None => synthetic,
        });
        flow.rejects = flow.rejects.clone().concat(rejects);
    }
}

/// A line per style, under the fan-out's.
fn style_lines(styles: &[Style]) -> String {
    let line = |st: &Style| {
        let retries = st.retries.map(|k| format!(" retries={k}")).unwrap_or_default();
        format!(
            "\n       style {} rate={} max_new_tokens={}{retries} template={}",
            st.name,
            st.rate,
            st.max_new_tokens,
            st.template_hash()
        )
    };
    styles.iter().map(line).collect()
}

/// The gates' models and bars.
fn gates(g: &GateConfig) -> String {
    let embedder = if g.embedder.is_empty() { "none (no meaning gate)" } else { g.embedder.as_str() };
    let mut out = format!("embedder={embedder} min_cosine={}", g.min_cosine);
    if !g.grounding_model.is_empty() {
        out += &format!(" lm={} max_unsupported_share={}", g.grounding_model, g.max_unsupported_share);
    }
    if !g.entailment.is_empty() {
        out += &format!(" entailment={} min_entailment={}", g.entailment, g.min_entailment);
    }
    out
}
