//! The server's model: one thread owns the decoder and a continuous [`Batcher`]; requests from
//! every client join the same batch as slots free up, and each request's tokens stream back
//! through its own channel as they are decoded.

use std::collections::HashMap;
use std::sync::mpsc;

use tokio::sync::mpsc::UnboundedSender;
use wrapflow_operators::engine::{Batcher, Decoder, Finish, GenerationConfig, Prompt};

/// What a request hears from the engine.
#[derive(Debug)]
pub enum Event {
    /// More text (streaming requests only).
    Delta(String),
    /// The request is finished: the rest of its text (all of it when not streaming).
    Done {
        rest: String,
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Tokens where the number and the name guard overrode the model.
        guarded: [u32; 2],
    },
    Failed(String),
}

/// A request for the engine thread.
pub struct Job {
    pub prompt: Prompt,
    pub stream: bool,
    pub events: UnboundedSender<Event>,
}

/// A request being decoded: where its events go and how much text it was sent.
struct Open {
    events: UnboundedSender<Event>,
    stream: bool,
    sent: usize,
    stop: Vec<String>,
}

/// Runs the engine until every sender of `jobs` is gone and the batch is empty.
pub fn run(mut dec: Decoder, cfg: GenerationConfig, jobs: mpsc::Receiver<Job>) {
    let mut batcher = Batcher::new(cfg.clone());
    let mut open: HashMap<usize, Open> = HashMap::new();
    loop {
        if batcher.is_idle() {
            // Nothing to decode: wait for a request (or the end).
            match jobs.recv() {
                Ok(job) => add(&mut batcher, &mut open, job),
                Err(_) => return,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            add(&mut batcher, &mut open, job);
        }
        // A request whose client left (its receiver is gone) stops decoding.
        let gone: Vec<usize> = open.iter().filter(|(_, o)| o.events.is_closed()).map(|(&i, _)| i).collect();
        for index in gone {
            batcher.cancel(index);
            open.remove(&index);
        }
        let mut finished = Vec::new();
        if let Err(e) = batcher.step(&mut dec, &mut |c| finished.push(c)) {
            // The batch's state is lost: every open request fails, the server goes on.
            for (_, o) in open.drain() {
                let _ = o.events.send(Event::Failed(format!("generation failed: {e:#}")));
            }
            batcher = Batcher::new(cfg.clone());
            continue;
        }
        for c in finished {
            let Some(o) = open.remove(&c.index) else { continue };
            let rest = c.text.get(o.sent..).unwrap_or("").to_string();
            let _ = o.events.send(Event::Done {
                rest,
                finish: c.finish,
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.token_ids.len(),
                guarded: [c.guarded, c.names_guarded],
            });
        }
        for (index, ids) in batcher.live() {
            let Some(o) = open.get_mut(&index).filter(|o| o.stream) else { continue };
            let text = dec.tokenizer.decode(ids, true).unwrap_or_default();
            let safe = settled(&text, &o.stop);
            if safe > o.sent {
                let _ = o.events.send(Event::Delta(text[o.sent..safe].to_string()));
                o.sent = safe;
            }
        }
    }
}

fn add(batcher: &mut Batcher, open: &mut HashMap<usize, Open>, job: Job) {
    let stop = job.prompt.stop.clone();
    let index = batcher.push(job.prompt);
    open.insert(index, Open { events: job.events, stream: job.stream, sent: 0, stop });
}

/// How much of a sequence's text so far can be sent and never taken back: not a character the
/// next token may complete, and not the start of a stop string.
fn settled(text: &str, stop: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    let hold = stop.iter().map(String::len).max().unwrap_or(0).saturating_sub(1);
    end = end.saturating_sub(hold);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_text_holds_back_partial_characters_and_stop_strings() {
        assert_eq!(settled("Hello wor", &[]), 9);
        assert_eq!(settled("Hello \u{FFFD}", &[]), 6);
        assert_eq!(settled("Hello wor", &["world!".into()]), 4);
        assert_eq!(settled("héllo", &["ab".into()]), 5, "never inside a character");
    }
}
