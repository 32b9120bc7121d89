//! What a job wrote down: worker reports ([`worker`]) merged ([`merge`]) into `manifest.json` ([`manifest`]),
//! the rephrase section ([`rephrase`]) and the fidelity of rephrasings ([`fidelity`]), the
//! mixtures ([`mixing`]), `report.html` ([`html`]) and the text report ([`text`]). Nothing here
//! depends on the job or the command line.

pub mod card;
pub mod fidelity;
pub mod html;
pub mod manifest;
pub mod merge;
pub mod mixing;
pub mod rephrase;
pub mod samples;
pub mod text;
pub mod worker;
