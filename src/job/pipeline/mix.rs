//! **Mix** (`MIX name`): every mixture of the plan from the chunks and accepted rows, in one
//! stage that balances them to token-exact ratios (`mix/<name>/`).

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, Inspect, Probe};
use wrapflow_operators::{Mix, MixConfig, MixRow};

use super::{Env, Flow, Line, Number, Step};
use crate::plan::Plan;

struct Mixtures<'p>(&'p [(String, MixConfig, usize)]);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    if plan.mixes.is_empty() { vec![] } else { vec![Box::new(Mixtures(&plan.mixes))] }
}

impl Step for Mixtures<'_> {
    fn describe(&self) -> Vec<Line> {
        // One stage writes every mixture: one number.
        let number = |i: usize| if i == 0 { Number::Next } else { Number::Same };
        self.0.iter().enumerate().map(|(i, (name, m, _))| Line::new("mix", describe(name, m)).numbered(number(i))).collect()
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        let mut rows = flow.chunks().map(MixRow::from);
        if let Some(synthetic) = &flow.synthetic {
            rows = rows.concat(synthetic.clone().map(MixRow::from));
        }
        let r = env.report.clone();
        rows.mix(&env.sh.mix, env.ctx).inspect(move |ev| r.borrow_mut().mix.push(ev.clone())).probe_with(env.probe);
    }
}

fn describe(name: &str, m: &MixConfig) -> String {
    let stages = if m.stages.is_empty() { String::new() } else { format!(" stages={} by {}", m.stages, m.stage) };
    format!(
        "{name} → mix/{name}/  ratio={} styles={} shortfall={:?} unit={:?} shard_tokens={} format={:?}{stages}",
        m.ratio,
        if m.styles.is_empty() { "equal" } else { m.styles.as_str() },
        m.shortfall,
        m.unit,
        m.shard_tokens,
        m.format
    )
}
