//! Question/Answer outputs: their pairs, the repetition a Q&A is judged by, and the leading
//! pairs left when its last ones fail a gate.

use std::collections::HashSet;

use crate::fidelity::sentences::{ANSWER, QUESTION};

/// Question/Answer pairs in a conversation-style output.
pub fn qa_pairs(text: &str) -> usize {
    QUESTION.find_iter(text).count().min(ANSWER.find_iter(text).count())
}

/// Whether a Q&A ends with a question that no answer follows, or whose answer label has no
/// words after it.
pub(crate) fn unanswered(text: &str) -> bool {
    let Some(q) = QUESTION.find_iter(text).last() else { return false };
    let rest = &text[q.end()..];
    ANSWER.find(rest).is_none_or(|a| !rest[a.end()..].chars().any(char::is_alphanumeric))
}

/// The first `k` Question/Answer pairs of a Q&A, for each `k` from one less than all down to
/// one: what is left to keep when its last pairs fail a gate.
pub fn pair_prefixes(text: &str) -> Vec<&str> {
    let starts: Vec<usize> = QUESTION.find_iter(text).map(|m| m.start()).collect();
    starts.iter().skip(1).rev().map(|&at| text[..at].trim_end()).collect()
}

/// [`repetition`](super::repetition) of a Q&A: its Question/Answer labels are structure, not words, and an
/// answer that takes up its own question's words ("What did X cost?" "X cost ...") does not
/// repeat itself; any other n-gram seen before does.
pub fn qa_repetition(text: &str, n: usize) -> f64 {
    let words = |t: &str| -> Vec<String> {
        let asked = QUESTION.replace_all(t, " ");
        ANSWER.replace_all(&asked, " ").split_whitespace().map(str::to_lowercase).collect()
    };
    let mut starts: Vec<usize> = QUESTION.find_iter(text).map(|m| m.start()).collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(text.len());
    let (mut seen, mut total, mut repeats) = (HashSet::new(), 0, 0);
    for pair in starts.windows(2).map(|w| &text[w[0]..w[1]]) {
        let split = ANSWER.find(pair).map_or(pair.len(), |m| m.start());
        let (q, a) = (words(&pair[..split]), words(&pair[split..]));
        let asked: HashSet<&[String]> = q.windows(n.max(1)).collect();
        for (w, echo_ok) in q.windows(n.max(1)).map(|w| (w, false)).chain(a.windows(n.max(1)).map(|w| (w, true))) {
            total += 1;
            let repeat = !seen.insert(w.to_vec());
            if repeat && !(echo_ok && asked.contains(w)) {
                repeats += 1;
            }
        }
    }
    if n == 0 || total == 0 { 0.0 } else { repeats as f64 / total as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::gates::repetition;

    #[test]
    fn a_qa_answer_may_take_up_its_question_but_a_repeated_pair_repeats() {
        let echo = "Question: What is the purpose of the community computer centres in Peru?\nAnswer: The \
                    purpose of the community computer centres in Peru is to give farmers prices.\n\n\
                    Question: Who pays for the centres?\nAnswer: The centres are paid for by a charity.";
        assert!(repetition(echo, 3) > 0.1, "echoes count as repeats in plain text");
        assert_eq!(qa_repetition(echo, 3), 0.0);
        let first = echo.split("\n\n").next().unwrap();
        let looped = format!("{first}\n\n{first}\n\n{first}");
        assert!(qa_repetition(&looped, 3) > 0.4, "{}", qa_repetition(&looped, 3));
        assert!(!unanswered(echo) && unanswered(&format!("{echo}\n\nQuestion: And then?")));
        assert!(unanswered(&format!("{echo}\n\nQuestion: And then?\nAnswer:")), "an empty answer");
    }
}
