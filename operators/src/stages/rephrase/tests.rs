use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::engine::Request;
use crate::record::Chunk;

#[test]
fn an_answer_that_copies_its_source_is_asked_for_in_own_words() {
    let medium = crate::stages::styles::builtin("medium").unwrap();
    let own = own_words(&medium);
    assert!(own.user.ends_with(OWN_WORDS) && own.user.contains("{chunk}"), "{}", own.user);
    let src = "The council will spend 12 million pounds on 2,000 new homes by 2027, the mayor said on Monday.";
    let answer = |text: &str| answer_to(src, text);
    let gates = GateConfig::default();
    assert!(copies(&answer(src), &medium, &gates));
    assert!(!copies(&answer("By 2027 the mayor expects 2,000 homes for 12 million pounds."), &medium, &gates));
    let off = Style { gates: Some(vec!["length".into()]), ..medium };
    assert!(!copies(&answer(src), &off, &gates), "not when the style turns the copy gate off");
}

/// A backend's answer that ended at a stop, from a 10-token prompt.
fn answer(text: String, generated_tokens: u32) -> Answer {
    Answer {
        text,
        finish: Finish::Stop,
        prompt_tokens: 10,
        generated_tokens,
        guarded: 0,
        names_guarded: 0,
        checked_out: false,
    }
}

/// A backend that records what it is asked and answers nothing by itself; it continues a
/// request's prefix when its flag says so.
struct Recorder(Rc<RefCell<Vec<Request>>>, bool);

impl crate::engine::Backend for Recorder {
    fn submit(&mut self, request: Request) -> anyhow::Result<usize> {
        self.0.borrow_mut().push(request);
        Ok(self.0.borrow().len() - 1)
    }
    fn poll(&mut self, _: Duration, _: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()> {
        Ok(())
    }
    fn outstanding(&self) -> usize {
        0
    }
    fn lineage(&self) -> crate::engine::Lineage {
        Default::default()
    }
    fn continues_prefix(&self) -> bool {
        self.1
    }
}

#[test]
fn a_retry_keeps_the_answer_before_the_flagged_sentence_and_continues_it() {
    let src = "The dam opened in 1961. It holds four lakes and a river.";
    let easy = crate::stages::styles::builtin("easy").unwrap();
    // Only the number gate decides (no reading level or cosine to aim at).
    let style = Style { gates: Some(vec!["numbers".into()]), register: 0.0, aim_cosine: None, ..easy };
    let say = |text: &str| Ok(answer(text.into(), 5));
    // (the option, whether the backend continues a prefix): only both resume.
    for (option, continues) in [(true, true), (false, true), (true, false)] {
        let resume = option && continues;
        let asked = Rc::new(RefCell::new(vec![]));
        let cfg =
            RephraseConfig { retries: 2, resume_retries: option, styles: vec![style.clone()], ..Default::default() };
        let mut work = Work::<u64> {
            backend: crate::engine::shared(Box::new(Recorder(asked.clone(), continues))),
            styles: Arc::new(cfg.styles.clone()),
            cfg,
            embedder: None,
            held: BTreeMap::new(),
            tasks: HashMap::new(),
            ready: vec![],
            seen: Timing::default(),
            ranking_s: 0.0,
            resumed: 0,
            stopped: 0,
        };
        let task = answer_to(src, "").task;
        work.tasks.insert(7, Queued { time: 0, task, attempt: 0, spent: 0, prefix: String::new(), best: None });
        work.finish(7, say("The dam opened in 1961. It holds 15 lakes."));
        let retry = asked.borrow()[0].clone();
        if !resume {
            assert_eq!(retry.prefix, style.answer_prefix, "without resume a retry starts afresh");
            continue;
        }
        assert_eq!(retry.prefix, "The dam opened in 1961.", "the sentence with the invented 15 is asked again");
        let fresh = task_request(&style, &answer_to(src, "").task, 1, &work.cfg, "");
        let stop = |r: &Request| r.soft_stop.as_ref().map(|s| s.after_tokens);
        assert!(
            stop(&retry) < stop(&fresh) && retry.max_new_tokens < fresh.max_new_tokens,
            "budgets less the kept part"
        );
        assert_eq!(work.resumed, 1);
        work.finish(0, say(" It holds four lakes."));
        let (_, r) = work.ready.pop().expect("the passing answer is ready");
        assert_eq!(r.text, "The dam opened in 1961. It holds four lakes.");
        assert_eq!(r.attempts, 2);
    }
}

/// An answer `text` to a task on the chunk `src`.
fn answer_to(src: &str, text: &str) -> Rephrased {
    let chunk = Chunk {
        doc_id: "d".into(),
        chunk_index: 0,
        text: src.into(),
        n_tokens: 20,
        byte_start: 0,
        byte_end: src.len() as u64,
        source_file: "f".into(),
        source_line: 1,
    };
    Rephrased { text: text.into(), ..failed(StyleTask { chunk, style: 0 }, "unused") }
}

fn gates_reason(v: Verdict) -> Option<String> {
    match v {
        Verdict::Reject { reason, .. } => Some(reason),
        Verdict::Accept { .. } => None,
    }
}

#[test]
fn answers_rank_by_the_verdict_the_gate_stage_gives() {
    let qa = crate::stages::styles::builtin("qa").unwrap();
    let src = "The museum in Carlow reopened on Friday after a repair of its roof, which had leaked for years. The work cost two million euros. Its director, Nora Quinn, said that visitor numbers had doubled since the reopening.";
    let answer = |text: &str| Rephrased { finish: Finish::Stop, ..answer_to(src, text) };
    let good = "Question: When did the museum in Carlow reopen?\nAnswer: On Friday, after its leaking roof was repaired.\n\nQuestion: How much did the work cost?\nAnswer: Two million euros.\n\nQuestion: What did its director, Nora Quinn, say?\nAnswer: That visitor numbers had doubled since it reopened.";
    // A last pair naming someone the source does not: the gate stage keeps the first three.
    let tail = format!("{good}\n\nQuestion: Who paid for the work?\nAnswer: The Oludaraki Foundation.");
    let gates = GateConfig::default();
    let judged = |text: &str, g: &GateConfig| gates_reason(check_style(src, text, false, &qa, g));
    assert_eq!(judged(good, &gates), None);
    assert!(judged(&tail, &gates).is_some_and(|r| r.starts_with("entity")), "{:?}", judged(&tail, &gates));
    assert!(!rank(&mut answer(good), &qa, &gates, None).0.0);
    assert!(!rank(&mut answer(&tail), &qa, &gates, None).0.0, "its leading pairs pass");
    let whole = GateConfig { trim_qa_pairs: false, ..gates };
    assert!(rank(&mut answer(&tail), &qa, &whole, None).0.0, "judged whole, it fails");
}

/// A backend that answers every request at once with its own name and the request's seed.
struct Named(&'static str, Vec<(usize, u64)>);

impl crate::engine::Backend for Named {
    fn submit(&mut self, request: Request) -> anyhow::Result<usize> {
        self.1.push((self.1.len(), request.seed));
        Ok(self.1.len() - 1)
    }
    fn poll(&mut self, _: Duration, done: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()> {
        for (i, seed) in self.1.drain(..) {
            done(i, Ok(answer(format!("{} answers {seed}.", self.0), 3)));
        }
        Ok(())
    }
    fn outstanding(&self) -> usize {
        self.1.len()
    }
    fn lineage(&self) -> crate::engine::Lineage {
        crate::engine::Lineage { model: self.0.into(), ..Default::default() }
    }
}

#[test]
fn two_rephrase_stages_in_one_dataflow_each_drive_their_own_backend() {
    use timely::dataflow::operators::ToStream;
    use timely::dataflow::operators::capture::{Capture, Event};

    use crate::stages::fanout::{FanOut, FanoutConfig};
    let chunks: Vec<Chunk> =
        (0..3u32).map(|i| Chunk { chunk_index: i, ..answer_to("A text.", "").task.chunk }).collect();
    let style = |name: &str| Style {
        gates: Some(vec![]),
        register: 0.0,
        aim_cosine: None,
        ..crate::stages::styles::builtin(name).unwrap()
    };
    let (easy, hard) = (vec![style("easy")], vec![style("hard"), style("qa")]);
    let out = timely::example(move |scope| {
        let ctx = StageContext::default();
        let stage = |styles: &Vec<Style>, name: &'static str| {
            let backend = crate::engine::shared(Box::new(Named(name, vec![])));
            let cfg = RephraseConfig { styles: styles.clone(), ..Default::default() };
            let tasks =
                chunks.clone().to_stream(scope).fan_out(&FanoutConfig { styles: styles.clone(), seed: 0 }, &ctx);
            tasks.rephrase(&cfg, &backend, &ctx)
        };
        (stage(&easy, "first").capture(), stage(&hard, "second").capture())
    });
    let answers = |rx: std::sync::mpsc::Receiver<_>| -> Vec<(u32, u32, String)> {
        let rows = rx.try_iter().flat_map(|e| match e {
            Event::Messages(_, rows) => rows,
            Event::Progress(_) => vec![],
        });
        let mut v: Vec<_> = rows.map(|r: Rephrased| (r.task.chunk.chunk_index, r.task.style, r.text)).collect();
        v.sort();
        v
    };
    let (first, second) = (answers(out.0), answers(out.1));
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(second.len(), 6, "{second:?}");
    assert!(first.iter().all(|(_, style, text)| *style == 0 && text.starts_with("first answers")), "{first:?}");
    assert!(second.iter().all(|(_, _, text)| text.contains("second answers")), "{second:?}");
    assert_eq!(second.iter().filter(|(_, style, _)| *style == 1).count(), 3, "each chunk in both of its styles");
}

#[test]
fn an_answer_stops_early_only_at_a_sentence_that_a_sentence_gate_rejects() {
    let src = "The dam opened in 1961. It holds four lakes and a river.";
    let easy = crate::stages::styles::builtin("easy").unwrap();
    let check = request::sentence_check(&easy, &GateConfig::default(), src);
    let fails = |t: &str| (check.0)(t);
    assert!(!fails("The dam opened in 1961."));
    assert!(fails("The dam opened in 1961. It holds 15 lakes."), "a number the source lacks");
    assert!(fails("The dam opened in 1961 near Paris."), "a name the source lacks");
    assert!(!fails("Sure, here is the text in simple words:"), "a leading acknowledgement line");
    assert!(!fails("Here is a simpler version."), "the same, which the answer may go on after");
    assert!(!fails(src), "copying is judged on the whole answer, not sentence by sentence");
    // Requests carry the check when the option is on, Q&A styles' too: a Q&A's failing sentence
    // ends the pairs that trimming can keep.
    let task = answer_to(src, "").task;
    let cfg = RephraseConfig::default();
    assert!(task_request(&easy, &task, 0, &cfg, "").check.is_some());
    let off = RephraseConfig { stop_early: false, ..cfg.clone() };
    assert!(task_request(&easy, &task, 0, &off, "").check.is_none());
    let qa = crate::stages::styles::builtin("qa").unwrap();
    let check = task_request(&qa, &task, 0, &cfg, "").check.expect("a Q&A's check");
    assert!(!(check.0)("Question: When did the dam open?\nAnswer: The dam opened in 1961."));
    assert!((check.0)("Question: When did the dam open?\nAnswer: It opened in 1975."));
}
