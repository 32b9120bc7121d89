//! The rules of fidelity to a source, each in one place: where sentences end and labels stand
//! ([`sentences`]), what a name is and when it is the source's ([`names`]), which figures a
//! text states in digits ([`numbers`]) and in words ([`number_words`]), and which words carry
//! content ([`words`]). The guards (`engine`) hold a generation to these rules token by token and
//! the gates (`stages::gates`) judge a finished text by them; neither has rules of its own, so a
//! text the guards let through is one the gates accept (`engine::guards::agreement`'s
//! `guards_never_pass_what_gates_reject`).

pub mod names;
pub mod number_words;
pub mod numbers;
pub mod sentences;
pub mod words;
