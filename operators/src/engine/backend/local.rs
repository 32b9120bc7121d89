//! [`LocalBackend`]: the model in this process, one ONNX Runtime session with continuous
//! batching.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Answer, Backend, Lineage, Request};
use crate::engine::decode::decoder::Decoder;
use crate::engine::decode::generate::{AnswerCheck, Batcher, GenerationConfig, Prompt, Timing};
use crate::engine::guards::leak::{LEAK_TOKENS, LeakGuard};
/// The prompt text of a request for a model in this process: the chat turns in the model's
/// template (plain text without one), then the answer prefix for the model to continue.
pub fn render(dec: &Decoder, r: &Request) -> anyhow::Result<String> {
    let mut text = match dec.chat_template {
        Some(_) => crate::engine::chat_prompt(dec, &r.messages)?,
        None => r.plain.clone(),
    };
    text.push_str(&r.prefix);
    Ok(text)
}

/// The model in this process: one ONNX Runtime session and a continuous [`Batcher`].
pub struct LocalBackend {
    dec: Decoder,
    cfg: GenerationConfig,
    batcher: Batcher,
    /// Indices submitted and not answered, which a failed step must report.
    open: BTreeSet<usize>,
}

impl LocalBackend {
    pub fn new(dec: Decoder, cfg: GenerationConfig) -> Self {
        LocalBackend { dec, batcher: Batcher::new(cfg.clone()), cfg, open: BTreeSet::new() }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }
}

impl Backend for LocalBackend {
    fn submit(&mut self, r: Request) -> anyhow::Result<usize> {
        let text = render(&self.dec, &r)?;
        let ids = self.dec.encode_prompt(&text)?;
        let contrast = match &r.contrast {
            Some(c) if c.weight > 0.0 => {
                let without = Request { messages: c.messages.clone(), plain: c.plain.clone(), ..Default::default() };
                self.dec.encode_prompt(&(render(&self.dec, &without)? + &r.prefix))?
            }
            _ => vec![],
        };
        let check = r.check.map(|c| {
            let prefix = r.prefix.clone();
            AnswerCheck(Arc::new(move |text: &str| (c.0)(&format!("{prefix}{text}"))))
        });
        let i = self.batcher.push(Prompt {
            id: String::new(),
            ids,
            max_new_tokens: Some(r.max_new_tokens),
            seed: Some(r.seed),
            soft_stop: r.soft_stop,
            min_new_tokens: r.min_new_tokens,
            temperature: r.temperature,
            numbers: r.numbers,
            names: r.names,
            leaks: (!r.examples.is_empty())
                .then(|| Arc::new(LeakGuard::new(&self.dec.tokenizer, &r.examples, &r.source, LEAK_TOKENS)))
                .filter(|g| !g.is_empty()),
            qa_format: r.qa_format,
            qa_min_pairs: r.qa_min_pairs,
            continues: r.prefix,
            contrast,
            context_weight: r.contrast.as_ref().map_or(0.0, |c| c.weight),
            check,
            ahead: r.ahead,
            ..Default::default()
        });
        self.open.insert(i);
        Ok(i)
    }

    fn poll(&mut self, budget: Duration, done: &mut dyn FnMut(usize, Result<Answer, String>)) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !self.batcher.is_idle() && t0.elapsed() < budget {
            let open = &mut self.open;
            let step = self.batcher.step(&mut self.dec, &mut |c| {
                open.remove(&c.index);
                let answer = Answer {
                    text: c.text,
                    finish: c.finish,
                    prompt_tokens: c.prompt_tokens as u32,
                    generated_tokens: c.token_ids.len() as u32,
                    guarded: c.guarded,
                    names_guarded: c.names_guarded,
                    checked_out: c.checked_out,
                };
                done(c.index, Ok(answer));
            });
            if let Err(e) = step {
                // A failed step loses the batch's state: every open request fails, the model stays.
                for i in std::mem::take(&mut self.open) {
                    done(i, Err(format!("{e:#}")));
                }
                self.batcher = Batcher::new(self.cfg.clone());
            }
        }
        Ok(())
    }

    fn outstanding(&self) -> usize {
        self.batcher.outstanding()
    }

    fn timing(&self) -> Timing {
        self.batcher.timing.clone()
    }

    fn lineage(&self) -> Lineage {
        let dir = &self.dec.dir;
        let model = dir.file_name().map_or_else(|| dir.display().to_string(), |f| f.to_string_lossy().into_owned());
        Lineage { model, weights_hash: self.dec.weights_hash.clone() }
    }
}
