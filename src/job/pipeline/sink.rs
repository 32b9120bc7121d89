//! **Sink** (`SINK 'url'`): chunks to `chunks/`, accepted rows to `synthetic/`, every reject to
//! `rejects/` (JSON Lines whatever the plan's format), in atomic shards.

use timely::dataflow::operators::{Inspect, Probe};
use wrapflow_operators::{SinkConfig, SinkFormat, SinkShards};

use super::{Env, Flow, Line, Step};
use crate::plan::{Plan, SinkSpec};

struct Sink<'p>(&'p SinkSpec);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    vec![Box::new(Sink(&plan.sink.0))]
}

impl Step for Sink<'_> {
    fn describe(&self) -> Vec<Line> {
        let s = self.0;
        let what = format!(
            "{} format={} shard_rows={} (+ rejects/, manifest.json)",
            s.url,
            s.config.format.extension(),
            s.config.shard_rows
        );
        vec![Line::new("sink", what)]
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        let config = &self.0.config;
        let dir = |dir: &str, config: &SinkConfig| SinkConfig { dir: dir.into(), ..config.clone() };
        let r = env.report.clone();
        if let Some(synthetic) = &flow.synthetic {
            synthetic
                .clone()
                .sink_shards(&dir("synthetic", config), env.ctx)
                .inspect(move |s| r.borrow_mut().synthetic_shards.push(s.clone()))
                .probe_with(env.probe);
        }
        let r = env.report.clone();
        flow.chunks()
            .sink_shards(&dir("chunks", config), env.ctx)
            .inspect(move |s| r.borrow_mut().shards.push(s.clone()))
            .probe_with(env.probe);
        // An open shard of rejects is held in memory until it closes.
        let rejects = dir("rejects", &SinkConfig { format: SinkFormat::Jsonl, ..config.clone() });
        let r = env.report.clone();
        flow.rejects
            .clone()
            .sink_shards(&rejects, env.ctx)
            .inspect(move |s| r.borrow_mut().reject_shards.push(s.clone()))
            .probe_with(env.probe);
    }
}
