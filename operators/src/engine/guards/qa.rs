//! Format-constrained decoding for Question/Answer styles: every question gets its answer.
//!
//! A small model asked for "Question: … / Answer: …" pairs often ends a question line and goes
//! on with prose, another question, or nothing at all; the format gate rejects such texts (a
//! question without an answer, fewer than two pairs) and each costs a retry. A [`QaFormat`]
//! holds the model to the format instead: when it ends a question line (a newline, or the end
//! of the text), the text goes on with `Answer:` on the next line; when it ends an answer line,
//! with a blank line and `Question:`. The model writes every question and answer itself; only
//! the labels are written for it. With a least number of answered pairs
//! ([`Prompt::qa_min_pairs`](crate::engine::Prompt::qa_min_pairs)), the text may not end before
//! it has them, neither at the model's end of sequence nor at the soft stop: the default model,
//! asked for a conversation, mostly stops after one pair, which the format gate rejects (75 of
//! 127 held-out Q&A tasks after five attempts each), but the pairs it adds when held are seldom
//! true, so the rephrase stage asks for it only with `hold_qa_pairs`. The format gate still
//! checks every text.

use tokenizers::Tokenizer;

use crate::fidelity::sentences::line_label;

/// The labels a Q&A's lines are held to.
#[derive(Clone, Debug)]
pub struct QaFormat {
    /// Tokens of a new answer line (`\nAnswer:`) and of a new pair (`\n\nQuestion:`).
    answer: Vec<u32>,
    question: Vec<u32>,
}

impl QaFormat {
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let ids = |t: &str| tokenizer.encode(t, false).map(|e| e.get_ids().to_vec()).unwrap_or_default();
        QaFormat { answer: ids("\nAnswer:"), question: ids("\n\nQuestion:") }
    }

    /// The tokens to write instead of `piece`, the text of the token the model picked after
    /// `line` (the current line so far; `None` for the end of the text), or `None` to keep it.
    /// Only a piece that ends a question or answer line with words in it is replaced: by its
    /// text up to the newline, then the next label.
    pub fn replace(&self, tokenizer: &Tokenizer, line: &str, piece: Option<&str>) -> Option<Vec<u32>> {
        let head = match piece {
            Some(p) => &p[..p.find('\n')?],
            None => "",
        };
        let line = format!("{line}{head}");
        // A labelled line, as the format gate reads labels ([`line_label`]).
        let (question, said) = line_label(&line)?;
        if !said.chars().any(char::is_alphanumeric) {
            return None;
        }
        if piece.is_none() && !question {
            return None;
        }
        let (next, text) = if question { (&self.answer, "\nAnswer:") } else { (&self.question, "\n\nQuestion:") };
        if head.is_empty() {
            return Some(next.clone());
        }
        tokenizer.encode(format!("{head}{text}"), false).ok().map(|e| e.get_ids().to_vec())
    }

    /// Whether `line` is an answer line with words in it: a pair that counts towards a
    /// Q&A's least number of pairs.
    pub fn answered(line: &str) -> bool {
        matches!(line_label(line), Some((false, said)) if said.chars().any(char::is_alphanumeric))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tokenizer with one token per character of the test texts.
    fn chars() -> Tokenizer {
        let vocab: String = "\nAQanswerqutio:?. WhSd"
            .chars()
            .collect::<std::collections::BTreeSet<char>>()
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}: {i}", serde_json::to_string(&c.to_string()).unwrap()))
            .collect::<Vec<_>>()
            .join(", ");
        let json = format!(
            r#"{{"version": "1.0", "model": {{"type": "BPE", "vocab": {{{vocab}}}, "merges": []}}, "decoder": null}}"#
        );
        Tokenizer::from_bytes(json.as_bytes()).unwrap()
    }

    #[test]
    fn an_ended_question_gets_its_answer_label_and_an_ended_answer_the_next_question() {
        let t = chars();
        let f = QaFormat::new(&t);
        let ids = |s: &str| Some(t.encode(s, false).unwrap().get_ids().to_vec());
        assert_eq!(f.replace(&t, "Question: Who won", Some("?\n")), ids("?\nAnswer:"));
        assert_eq!(f.replace(&t, "Question: Who won?", None), ids("\nAnswer:"));
        assert_eq!(f.replace(&t, "Answer: She did.", Some("\n")), ids("\n\nQuestion:"));
        assert_eq!(f.replace(&t, "Answer: She did.", None), None, "a text may end after an answer");
        assert_eq!(f.replace(&t, "Question: Who", Some(" won")), None, "the line goes on");
        assert_eq!(f.replace(&t, "Question:", Some("\n")), None, "a label without words is left alone");
        assert_eq!(f.replace(&t, "The end.", Some("\n")), None, "not a labelled line");
    }

    #[test]
    fn only_an_answer_line_with_words_answers_a_pair() {
        assert!(QaFormat::answered("Answer: She did."));
        assert!(!QaFormat::answered("Answer: "), "no words yet");
        assert!(!QaFormat::answered("Question: Who won?"));
        assert!(!QaFormat::answered("She did."), "not a labelled line");
    }
}
