//! Small, deterministic fixtures for tests, examples and benchmarks: nothing is downloaded.

use std::collections::HashSet;

use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// A few paragraphs of plain English to train fixtures on.
pub const SAMPLE_TEXT: &str = "The city council met on Tuesday to discuss the new budget for schools and roads. \
Members said the plan would cost 12 million pounds over three years, and that most of the money \
would go to repairs.\n\nLocal businesses welcomed the news. One shop owner said the roads had been \
in a poor state for a long time, and that customers often complained about the traffic.\n\n\
Scientists at the university have found a new way to measure the age of ancient trees. The method \
uses light to read the chemical record left in each ring of the wood. It could help researchers \
understand how the climate changed over the past 2,000 years.\n\nThe team will publish its results \
next month. Other experts said the work was an important step, but that more tests were needed \
before the method could be used widely.";

/// A byte-level BPE tokenizer (digits split one by one, like SmolLM2's) with a ~400-token
/// vocabulary trained on [`SAMPLE_TEXT`]: real BPE behaviour at a tiny size.
pub fn tiny_tokenizer() -> Tokenizer {
    let mut tok = Tokenizer::new(BPE::default());
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(ByteLevel::default()));
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = TrainerWrapper::from(
        BpeTrainerBuilder::new()
            .vocab_size(400)
            .min_frequency(1)
            .show_progress(false)
            .initial_alphabet(alphabet)
            .special_tokens(vec![AddedToken::from("<|im_start|>", true), AddedToken::from("<|im_end|>", true)])
            .build(),
    );
    let lines: Vec<&str> = SAMPLE_TEXT.split(". ").collect();
    tok.train(&mut trainer, lines.into_iter()).expect("training a tiny BPE on fixed text");
    tok
}

/// Writes [`tiny_tokenizer`] as a `tokenizer.json` file.
pub fn write_tiny_tokenizer(path: &std::path::Path) -> anyhow::Result<()> {
    tiny_tokenizer().save(path, false).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tiny_tokenizer_round_trips_and_merges() {
        let tok = super::tiny_tokenizer();
        let text = "The council met on Tuesday. Ünïcode 🌍 2,000 年";
        let enc = tok.encode(text, false).unwrap();
        assert!(enc.len() < text.len(), "merges shorten common words: {}", enc.len());
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
        let digits = tok.encode("2000", false).unwrap();
        assert_eq!(digits.len(), 4, "digits are split one by one");
    }
}
