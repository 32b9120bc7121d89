//! What a job wrote down: worker reports merged ([`merge`]) into `manifest.json` ([`manifest`]),
//! the rephrase section ([`rephrase`]) and fidelity of rephrasings ([`fidelity`]), the mixtures ([`mixing`]), `report.html`
//! ([`html`]), the text report ([`text`]) and `wrapflow status` ([`status`]).

pub mod fidelity;
pub mod html;
pub mod manifest;
pub mod merge;
pub mod mixing;
pub mod rephrase;
pub mod status;
pub mod text;
