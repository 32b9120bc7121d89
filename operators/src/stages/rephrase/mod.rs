//! **Rephrase** stage: [`StyleTask`]s in, one [`Rephrased`] per task out (the model's raw
//! answer, gates come next).
//!
//! Each worker owns one model session and one [`Batcher`]: tasks from any document and style
//! join the continuous batch as slots free up. The operator never blocks the worker for longer
//! than `time_slice_ms`: it decodes in slices, re-activating itself while work remains, so other
//! operators (reading, writing shards) keep running and timely's progress tracking keeps
//! moving. Memory is bounded by the caller's backpressure on the source (see `wrapflow::run`):
//! tasks are queued only for the input batches in flight. A task's output is emitted at the
//! time it arrived with; the operator holds one capability per time with outstanding tasks.
//! With `retries`, an answer that the gates reject, judged as the gate stage will judge it
//! ([`GateConfig::judge_text`]: the model-free gates, and with the worker's embedder in its
//! [`StageContext`] meaning and sentence support, a trailing unsupported sentence or a Q&A's
//! failing last pairs cut off), or that misses its style's reading level ([`Style::register`])
//! or cosine aim, is asked for again (sampled, seeded by the task and attempt); the best of the
//! task's answers leaves (a passing one first, then the one closest to the reading level, then
//! to the aim, then the earliest), and the gate stage judges it. With `resume_retries`, a retry
//! of an answer whose gate pointed at a sentence (an invented number, an unbound figure, a claim
//! with too little of its evidence) keeps the answer before that sentence as the start of the
//! new answer, which the model continues ([`crate::stages::gates::flagged::resume_point`]). With
//! `stop_early`, an answer in process stops at its first sentence that a sentence gate rejects,
//! so a retry (resumed there) follows without the tokens the rest would have cost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::engine::{Answer, Finish, SharedBackend, Timing};
use crate::stages::context::{SharedEmbedder, StageContext};
pub use crate::stages::fanout::Rephrased;
use crate::stages::fanout::StyleTask;
use crate::stages::gates::flagged::resume_at;
use crate::stages::gates::{GateConfig, Verdict, check_style, copy_share, cosines, strip_chatter};
use crate::stages::styles::Style;
use crate::state::metrics::Metrics;

/// Extension trait: rephrase style tasks with a model.
pub trait Rephrase<'scope, T: Timestamp + TotalOrder> {
    /// Answers every task with `backend` (a [`crate::engine::LocalBackend`] or a
    /// [`crate::engine::RemoteBackend`], this stage's alone while the dataflow runs); with the
    /// context's embedder, retries also answer again what the meaning gate would reject. When the
    /// backend fails for good the run fails (nothing is emitted for the tasks left).
    /// Counts `rephrase.answers`, `rephrase.prompt_tokens`, `rephrase.generated_tokens` (every
    /// attempt's), `rephrase.prefilled_tokens` and `rephrase.reused_tokens` (prompt tokens run and
    /// copied from the prefix cache), `rephrase.retries`, `rephrase.resumed_retries`,
    /// `rephrase.early_stops`, the gauge `rephrase.queued` (prompts waiting, the worker's rephrase
    /// stages together) and its maximum `rephrase.max_queued`.
    fn rephrase(self, cfg: &RephraseConfig, backend: &SharedBackend, ctx: &StageContext) -> Answers<'scope, T>;
}

/// The rephrase stage's output stream.
pub type Answers<'scope, T> = StreamVec<'scope, T, Rephrased>;

impl<'scope, T: Timestamp + TotalOrder> Rephrase<'scope, T> for StreamVec<'scope, T, StyleTask> {
    fn rephrase(self, config: &RephraseConfig, backend: &SharedBackend, ctx: &StageContext) -> Answers<'scope, T> {
        let backend = backend.clone();
        let scope = self.scope();
        let slice = Duration::from_millis(config.time_slice_ms.max(1));
        let mut work = Work {
            backend,
            cfg: config.clone(),
            styles: Arc::new(config.styles.clone()),
            embedder: ctx.embedder.clone(),
            held: BTreeMap::new(),
            tasks: HashMap::new(),
            ready: Vec::new(),
            seen: Timing::default(),
            ranking_s: 0.0,
            resumed: 0,
            stopped: 0,
        };
        let (metrics, ctx) = (ctx.metrics.clone(), ctx.clone());
        self.unary_frontier(Pipeline, "Rephrase", move |_cap, info| {
            let activator = scope.activator_for(info.address);
            let (mut dead, mut reported) = (false, 0);
            move |(input, _frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else { return };
                    for batch in data {
                        batch.drain(..).filter(|_| !dead).for_each(|task| work.accept(&cap, task));
                    }
                });
                let t0 = Instant::now();
                while !dead && work.backend.borrow().outstanding() > 0 && t0.elapsed() < slice {
                    let mut finished = Vec::new();
                    let budget = slice.saturating_sub(t0.elapsed());
                    let polled = work.backend.borrow_mut().poll(budget, &mut |i, a| finished.push((i, a)));
                    finished.into_iter().for_each(|(i, a)| work.finish(i, a));
                    work.count_time(&metrics);
                    if let Err(e) = polled {
                        // Nothing more can be answered: the run fails without emitting the tasks
                        // left (they are neither rows nor rejects), so it resumes them.
                        ctx.fail_as(crate::fault::Fault::Model, format!("{e:#}"));
                        (dead, work.tasks, work.held) = (true, HashMap::new(), BTreeMap::new());
                        // Answers finished before the failure go with the capabilities: a panic
                        // here ("a capability is held ...") hid the store's error.
                        work.ready.clear();
                    }
                }
                for (time, r) in work.ready.drain(..) {
                    count(&metrics, &r, &mut reported);
                    let entry = work.held.get_mut(&time).expect("a capability is held for every outstanding task");
                    output.session(&entry.0).give(r);
                    crate::state::checkpoint::failpoint("rephrase");
                    entry.1 -= 1;
                    if entry.1 == 0 {
                        work.held.remove(&time);
                    }
                }
                if !dead && work.backend.borrow().outstanding() > 0 {
                    activator.activate();
                }
            }
        })
        .container::<Vec<Rephrased>>()
    }
}

/// The rephrase operator's state.
struct Work<T: Timestamp> {
    backend: SharedBackend,
    cfg: RephraseConfig,
    styles: Arc<Vec<Style>>,
    embedder: Option<SharedEmbedder>,
    /// Per time with outstanding tasks: a capability and how many tasks remain.
    held: BTreeMap<T, (Capability<T>, usize)>,
    /// Requests in the backend, by index.
    tasks: HashMap<usize, Queued<T>>,
    /// Answers chosen, to emit at their time.
    ready: Vec<(T, Rephrased)>,
    /// The backend's timing when last counted, and the seconds spent ranking answers for retries
    /// (the meaning gate's embedder among them) since.
    seen: Timing,
    ranking_s: f64,
    /// Retries that continue an answer's passing start, and answers stopped at a failing
    /// sentence, since the last count.
    resumed: u64,
    stopped: u64,
}

impl<T: Timestamp + TotalOrder> Work<T> {
    /// Adds the time spent since the last call to `time.*_s`: the model's prefill and decode
    /// steps, choosing tokens (sampling and the guards' masks), and ranking answers for retries.
    fn count_time(&mut self, metrics: &Metrics) {
        let now = self.backend.borrow().timing();
        let d = now.since(&self.seen);
        let ranking = std::mem::take(&mut self.ranking_s);
        self.seen = now;
        metrics.update(|m| {
            for (name, s) in [
                ("time.prefill_s", d.prefill_s),
                ("time.decode_s", d.decode_s - d.select_s),
                ("time.token_choice_s", d.select_s),
                ("time.retry_ranking_s", ranking),
            ] {
                *m.sums.entry(name.into()).or_default() += s;
            }
            *m.counters.entry("rephrase.reused_tokens".into()).or_default() += d.reused_tokens;
            *m.counters.entry("rephrase.prefilled_tokens".into()).or_default() += d.prefill_tokens;
            *m.counters.entry("rephrase.resumed_retries".into()).or_default() += std::mem::take(&mut self.resumed);
            *m.counters.entry("rephrase.early_stops".into()).or_default() += std::mem::take(&mut self.stopped);
        });
    }

    /// Takes a task arriving at `cap`'s time.
    fn accept(&mut self, cap: &Capability<T>, task: StyleTask) {
        let time = cap.time().clone();
        self.held.entry(time.clone()).or_insert_with(|| (cap.clone(), 0)).1 += 1;
        let request = task_request(&self.styles[task.style as usize], &task, 0, &self.cfg, "");
        let prefix = request.prefix.clone();
        let submitted = self.backend.borrow_mut().submit(request);
        match submitted {
            Ok(i) => {
                self.tasks.insert(i, Queued { time, task, attempt: 0, spent: 0, prefix, best: None });
            }
            Err(e) => self.ready.push((time, failed(task, &format!("{e:#}")))),
        }
    }

    /// Takes a request's answer: keeps it if it is the task's best so far, and asks again while
    /// retries remain and no answer passes; otherwise the best answer is ready.
    fn finish(&mut self, index: usize, answer: Result<Answer, String>) {
        let Queued { time, task, attempt, spent, prefix, best } =
            self.tasks.remove(&index).expect("every answer has its task");
        let cfg = &self.cfg;
        let style = &self.styles[task.style as usize];
        let a = match answer {
            Ok(a) => a,
            // A failed retry leaves the best earlier answer; a failed first request, its reason.
            Err(e) => {
                let r = match best {
                    Some((b, ..)) => Rephrased { attempts: attempt + 1, spent_tokens: spent, ..b },
                    None => Rephrased { attempts: attempt + 1, ..failed(task, &e) },
                };
                return self.ready.push((time, r));
            }
        };
        self.stopped += u64::from(a.checked_out);
        let mut r = Rephrased {
            cosine: None,
            text: format!("{prefix}{}", a.text),
            finish: a.finish,
            prompt_tokens: a.prompt_tokens,
            generated_tokens: a.generated_tokens,
            error: None,
            attempts: attempt + 1,
            spent_tokens: spent + a.generated_tokens,
            queued: self.backend.borrow().outstanding() as u32,
            guarded: a.guarded,
            names_guarded: a.names_guarded,
            task,
        };
        let total = r.spent_tokens;
        let t0 = Instant::now();
        let (rank, resume) = rank(&mut r, style, &cfg.retry_gates, self.embedder.as_ref());
        self.ranking_s += t0.elapsed().as_secs_f64();
        let best = match best {
            Some((b, br, bat)) if br <= rank => (b, br, bat),
            _ => (r, rank, resume),
        };
        // A retry while no answer passes the gates at the reading level and the cosine aim.
        if attempt < style.retries.unwrap_or(cfg.retries) && (best.1.0 || best.1.1 > 0.0 || best.1.2 > 0.0) {
            // An answer that copies its source is asked for in the style's own words.
            let copied = copies(&best.0, style, &cfg.retry_gates);
            let style = if copied { &own_words(style) } else { style };
            let resumes = cfg.resume_retries && !style.qa_format && self.backend.borrow().continues_prefix();
            let kept = best.2.filter(|_| resumes).map_or("", |at| &best.0.text[..at]);
            let request = task_request(style, &best.0.task, attempt + 1, cfg, kept);
            let prefix = request.prefix.clone();
            // A retry the backend refuses keeps the answer we have.
            let submitted = self.backend.borrow_mut().submit(request);
            if let Ok(i) = submitted {
                self.resumed += u64::from(!kept.is_empty());
                let task = best.0.task.clone();
                self.tasks
                    .insert(i, Queued { time, task, attempt: attempt + 1, spent: total, prefix, best: Some(best) });
                return;
            }
        }
        let (mut r, ..) = best;
        // The chosen answer carries what the task cost in all.
        (r.attempts, r.spent_tokens) = (attempt + 1, total);
        self.ready.push((time, r));
    }
}

/// Counts an answer; `reported` is this stage's share of the worker's queue gauge.
fn count(metrics: &Metrics, r: &Rephrased, reported: &mut u64) {
    metrics.update(|m| {
        for (name, n) in [
            ("rephrase.answers", 1),
            ("rephrase.prompt_tokens", r.prompt_tokens as u64),
            ("rephrase.generated_tokens", r.spent_tokens as u64),
            ("rephrase.retries", r.attempts.saturating_sub(1) as u64),
        ] {
            *m.counters.entry(name.into()).or_default() += n;
        }
        // A worker's rephrase stages share the gauge: each adds the change of its own queue.
        let g = m.gauges.entry("rephrase.queued".into()).or_default();
        *g = (*g + r.queued as u64).saturating_sub(*reported);
        *reported = r.queued as u64;
        let queued = *g;
        let q = m.maxima.entry("rephrase.max_queued".into()).or_default();
        *q = (*q).max(queued);
    });
}

/// Whether an answer copies more of its source than the style's copy gate allows.
fn copies(r: &Rephrased, style: &Style, gates: &GateConfig) -> bool {
    let bound = style.max_copy_share.unwrap_or(gates.max_copy_share);
    style.gate_on("copy") && copy_share(&r.task.chunk.text, &strip_chatter(&r.text).0, gates.copy_n) > bound
}

/// A queued prompt: its time, task, attempt, the tokens spent on earlier attempts, the start of
/// the answer it continues, and the best earlier answer with its rank and resume point.
struct Queued<T> {
    time: T,
    task: StyleTask,
    attempt: u32,
    spent: u32,
    prefix: String,
    best: Option<(Rephrased, Rank, Option<usize>)>,
}

/// How an answer ranks among its task's answers (smaller is better): whether the gates reject
/// it, judged as the gate stage will (a trailing unsupported sentence or a Q&A's failing last
/// pairs cut off, not counted against it), then how many grades it falls short of the style's
/// reading level, then how far the kept text's cosine falls short of the style's aim.
type Rank = (bool, f64, f64);

fn rank(
    r: &mut Rephrased,
    style: &Style,
    gates: &GateConfig,
    embedder: Option<&SharedEmbedder>,
) -> (Rank, Option<usize>) {
    let src = r.task.chunk.text.clone();
    let truncated = r.finish == Finish::Length;
    // The whole answer is embedded only when the gates that need no model pass it (as the gate
    // stage does; the cosine is kept with the answer). A Q&A's leading pairs get their own.
    let passes = !matches!(check_style(&src, &r.text, truncated, style, gates), Verdict::Reject { .. });
    if let (true, Some(e), None) = (passes && style.gate_on("meaning"), embedder, r.cosine) {
        r.cosine = Some(cosines(Some(&mut e.borrow_mut()), std::slice::from_ref(r))[0]);
    }
    let cos = r.cosine.unwrap_or(f64::NAN);
    let (verdict, kept_cos) = gates.judge_text(&src, &r.text, truncated, cos, style, embedder);
    let (rejected, kept, resume) = match &verdict {
        Verdict::Accept { text, .. } => (false, text.as_str(), None),
        Verdict::Reject { reason, scores } => {
            (true, r.text.as_str(), resume_at(&src, &r.text, reason, scores, style, gates))
        }
    };
    let aim = match style.aim_cosine {
        Some(aim) if kept_cos.is_finite() => (aim - kept_cos).max(0.0),
        _ => 0.0,
    };
    ((rejected, style.register_shortfall(&src, kept), aim), resume)
}

fn failed(task: StyleTask, e: &str) -> Rephrased {
    Rephrased {
        cosine: None,
        task,
        text: String::new(),
        finish: Finish::Length,
        prompt_tokens: 0,
        generated_tokens: 0,
        error: Some(e.to_string()),
        attempts: 1,
        spent_tokens: 0,
        queued: 0,
        guarded: 0,
        names_guarded: 0,
    }
}

mod config;
mod request;

pub use config::RephraseConfig;
use request::task_request;
pub use request::{OWN_WORDS, own_words, plain_text, prompt_text, task_seed};

#[cfg(test)]
mod tests;
