//! Tokenizers: a GGUF's vocabulary as `tokenizer.json` ([`tokenizer`]), and token counts and
//! boundaries of byte-level BPE text without a full encode ([`token_bounds`], over GPT-2's
//! pre-token split, [`gpt2_split`]).

pub mod gpt2_split;
pub mod token_bounds;
pub mod tokenizer;
