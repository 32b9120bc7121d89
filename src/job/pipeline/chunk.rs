//! **Chunk**: documents in, chunks of at most `max_tokens` tokens out; documents that give no
//! chunk are rejects.

use timely::dataflow::operators::Concat;
use wrapflow_operators::{ChunkConfig, ChunkDocs};

use super::{Env, Flow, Line, Step};
use crate::plan::Plan;

struct Chunk<'p>(&'p ChunkConfig);

pub fn steps(plan: &Plan) -> Vec<Box<dyn Step + '_>> {
    vec![Box::new(Chunk(&plan.chunk.0))]
}

impl Step for Chunk<'_> {
    fn describe(&self) -> Vec<Line> {
        let c = self.0;
        let tokenizer = c.tokenizer.as_deref().unwrap_or("-");
        vec![Line::new("chunk", format!("max_tokens={} min_fill={} tokenizer={tokenizer}", c.max_tokens, c.min_fill))]
    }

    fn build<'s>(&self, flow: &mut Flow<'s>, env: &Env<'_>) {
        let docs = flow.docs.take().expect("KINDS puts the document steps before chunking");
        let (chunks, rejects) = docs.chunk_docs(self.0, env.ctx);
        flow.chunks = Some(chunks);
        flow.rejects = flow.rejects.clone().concat(rejects);
    }
}
