//! `manifest.json`: what a run read, kept, wrote, and how long it took.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wrapflow_operators::ShardInfo;
use wrapflow_operators::sql::source::InputFile;

/// Record counts; `read == rejected + filtered + limited + duplicates + near_duplicates + kept`
/// always holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records found in the inputs (rows and rejects).
    pub read: u64,
    /// Records that could not be used (see `rejects`).
    pub rejected: u64,
    /// Rows removed by the plan's SQL filters (and, in a plan without `LIMIT`, anything else its
    /// SQL dropped).
    pub filtered: u64,
    /// Rows read but not taken because the plan's `LIMIT` was reached.
    #[serde(default)]
    pub limited: u64,
    /// Rows dropped as exact duplicates of an earlier row.
    pub duplicates: u64,
    /// Documents dropped as near duplicates (`NEARDUP`) of an earlier document.
    #[serde(default)]
    pub near_duplicates: u64,
    /// Documents that went on to chunking.
    pub kept: u64,
    pub chunks: u64,
    /// Input objects not read (see `inputs[].skipped` for which and why); not records.
    #[serde(default)]
    pub skipped_objects: u64,
}

impl Counts {
    pub fn reconciles(&self) -> bool {
        self.read == self.rejected + self.filtered + self.limited + self.duplicates + self.near_duplicates + self.kept
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tokens {
    pub chunks: u64,
    pub max_per_chunk: u64,
    pub mean_per_chunk: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Input {
    pub table: String,
    pub location: String,
    pub format: String,
    pub files: Vec<InputFileOut>,
    /// Objects under the location that were not read, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<wrapflow_operators::sql::source::Skipped>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputFileOut {
    pub path: String,
    pub bytes: u64,
}

impl From<InputFile> for InputFileOut {
    fn from(f: InputFile) -> Self {
        InputFileOut { path: f.path, bytes: f.bytes }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub format: String,
    pub rows: u64,
    pub bytes: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rejects {
    pub format: String,
    pub rows: u64,
    pub shards: Vec<ShardInfo>,
    /// Reject counts by reason (the reason text before its first `:`).
    pub by_reason: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timings {
    pub started_at: String,
    pub finished_at: String,
    pub wall_s: f64,
    pub docs_per_s: f64,
    pub input_mb_per_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanInfo {
    pub file: String,
    pub hash: String,
    pub params: BTreeMap<String, String>,
    /// The plan's text (secrets masked), for the dataset card.
    #[serde(default)]
    pub text: String,
    /// What the plan's SINK says for the dataset card (licence, name, description, languages).
    #[serde(default)]
    pub card: crate::plan::CardSpec,
}

/// A style's prompt as the model gets it (`{chunk}` stands for the source text).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StylePrompt {
    pub name: String,
    pub system: String,
    pub user: String,
    pub answer_prefix: String,
    pub qa_format: bool,
}

/// An input object as listed: a later listing with another size or tag means it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The object's path in its store.
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// An input object that changed after it was read: reported, not read again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub table: String,
    pub read: FileStamp,
    pub now: FileStamp,
}

/// A manifest from its JSON, also one written before a plan could hold several REPHRASEs (its
/// one model's fields in `rephrase`, that model's server in `rephrase.remote`).
pub fn from_json(bytes: &[u8]) -> serde_json::Result<Manifest> {
    let mut m: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(r) = m.get_mut("rephrase").and_then(serde_json::Value::as_object_mut) {
        one_model(r);
    }
    serde_json::from_value(m)
}

/// Moves the one model of an earlier manifest's `rephrase` section into `models`.
fn one_model(r: &mut serde_json::Map<String, serde_json::Value>) {
    if r.contains_key("models") {
        return;
    }
    let Some(model) = r.remove("model") else { return };
    let remote = r.get_mut("remote").and_then(serde_json::Value::as_object_mut);
    let (endpoint, api) = remote.map_or((None, None), |x| (x.remove("endpoint"), x.remove("api")));
    let one = serde_json::json!({
        "model": model,
        "weights_hash": r.remove("weights_hash").unwrap_or_else(|| "".into()),
        "generation": r.remove("generation"),
        "styles": r.get("style_order").cloned().unwrap_or_else(|| serde_json::json!([])),
        "endpoint": endpoint,
        "api": api,
    });
    r.insert("models".into(), serde_json::json!([one]));
}

/// The whole manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub wrapflow_version: String,
    pub plan: PlanInfo,
    pub workers: usize,
    pub inputs: Vec<Input>,
    pub counts: Counts,
    pub tokens: Tokens,
    pub chunks: Output,
    pub rejects: Rejects,
    /// The rephrase stage, when the plan has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rephrase: Option<RephraseOut>,
    /// The plan's training mixtures (`MIX`), each with its shards in training order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixes: Vec<crate::report::mixing::MixOut>,
    /// Rows per length bin (16 tokens wide, the last bin open-ended): `real` and each style.
    #[serde(default)]
    pub lengths: BTreeMap<String, Vec<u64>>,
    pub timings: Timings,
    pub versions: BTreeMap<String, String>,
    /// Where the job stands (checkpoints, follow mode); absent in manifests of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobState>,
}

/// Where a checkpointed job stands.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobState {
    /// `finished`: input over and every stage flushed; `running`: a checkpoint of a job that
    /// goes on; `stopped`: stopped at a checkpoint, to resume with the same command.
    pub status: String,
    pub checkpoint: u64,
    pub committed_at: String,
    /// Input segments done and objects consumed.
    pub segments: u64,
    pub input_files: u64,
    /// Objects listed but not yet consumed (the lag of a followed job) at the checkpoint.
    #[serde(default)]
    pub pending_files: u64,
    #[serde(default)]
    pub pending_bytes: u64,
    /// Input objects that changed after they were read (not read again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_inputs: Vec<Changed>,
    /// Shards of mixtures still streaming (a finished mixture lists its shards in `mixes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_mix_shards: Vec<wrapflow_operators::MixShard>,
}

/// What the rephrase stages did: their models and settings, counts and fidelity per style.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RephraseOut {
    /// Each REPHRASE's model, in plan order.
    #[serde(default)]
    pub models: Vec<ModelOut>,
    pub embedder: Option<String>,
    /// Style tasks from the fan-out; `tasks == accepted + rejected`.
    pub tasks: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// The plan's styles in order, and the figures of each.
    pub style_order: Vec<String>,
    pub styles: BTreeMap<String, crate::report::fidelity::StyleStats>,
    /// Mean Flesch-Kincaid grade of the real chunks, next to the styles'.
    pub real_fk_grade: Option<f64>,
    /// Tokens of each task's prompt, counted once per task (a retry's prompt is not added).
    pub prompt_tokens: u64,
    /// Prompt tokens copied from the prefix cache instead of run through the model.
    #[serde(default)]
    pub reused_tokens: u64,
    /// Prompt tokens run through the model, every attempt's (in process).
    #[serde(default)]
    pub prefilled_tokens: u64,
    /// Tokens of every answer, retries included.
    pub generated_tokens: u64,
    /// Answers generated again because the model-free gates rejected the previous one.
    #[serde(default)]
    pub retries: u64,
    /// Retries that continued an answer's start up to the sentence its gate flagged.
    #[serde(default)]
    pub resumed_retries: u64,
    /// Answers stopped at their first sentence that a sentence gate rejects.
    #[serde(default)]
    pub early_stops: u64,
    /// Rephrasings taken from the journal after a crash instead of being generated again.
    #[serde(default)]
    pub journal_reused: u64,
    /// Most prompts waiting in one worker's rephrase operators together: bounded by
    /// backpressure on the source, not by the corpus size.
    #[serde(default)]
    pub max_queued_per_worker: u64,
    /// Generated tokens per second of wall time, all workers together.
    pub gen_tok_s: f64,
    /// Tokens of the accepted synthetic rows, and per second of wall time.
    #[serde(default)]
    pub accepted_tokens: u64,
    #[serde(default)]
    pub accepted_tok_s: f64,
    /// Where the rephrasing time went, seconds summed over workers: `prefill` and `decode` (the
    /// model's runs), `token_choice` (sampling, repeat blocking, the number and name guards'
    /// masks), `retry_ranking` (gating answers to decide on retries, the embedder included),
    /// `gates` (the gate stage, its embedder included) and `sinks` (the shard sinks' encoding and
    /// waits on uploads).
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
    /// Requests to inference servers (every REPHRASE with an endpoint together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteOut>,
    /// The accepted rows (`synthetic/`).
    pub synthetic: Output,
    /// Each style's prompt, in the plan's order.
    #[serde(default)]
    pub prompts: Vec<StylePrompt>,
    /// The gates' settings, every threshold included.
    #[serde(default)]
    pub gates: serde_json::Value,
}

/// One REPHRASE's model: what wrote its styles' rows (lineage) and how it decoded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelOut {
    /// Its directory, or on a server the model's name there.
    pub model: String,
    /// On a server: `endpoint:` and its address.
    pub weights_hash: String,
    pub generation: serde_json::Value,
    /// The styles it wrote, in the plan's order.
    pub styles: Vec<String>,
    /// On a server: its address (without credentials) and API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

/// How the remote backends fared: HTTP requests (tries included), retries, latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteOut {
    pub requests: u64,
    pub retries: u64,
    pub latency_p50_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
}

/// Versions of wrapflow and its main dependencies.
pub fn versions() -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = env!("WRAPFLOW_DEP_VERSIONS")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.insert("wrapflow".into(), env!("CARGO_PKG_VERSION").into());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_manifests_one_model_is_read_into_models() {
        let mut r =
            serde_json::to_value(RephraseOut { style_order: vec!["easy".into()], ..Default::default() }).unwrap();
        let old = r.as_object_mut().unwrap();
        old.remove("models");
        old.insert("model".into(), "m@h:1".into());
        old.insert("weights_hash".into(), "endpoint:http://h:1/v1".into());
        old.insert("generation".into(), serde_json::json!({"seed": 3}));
        old.insert(
            "remote".into(),
            serde_json::json!({"endpoint": "http://h:1/v1", "api": "chat", "requests": 2, "retries": 0}),
        );
        one_model(old);
        let r: RephraseOut = serde_json::from_value(r).unwrap();
        let m = &r.models[..];
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].model.as_str(), m[0].weights_hash.as_str()), ("m@h:1", "endpoint:http://h:1/v1"));
        assert_eq!((m[0].generation["seed"].as_u64(), &m[0].styles[..]), (Some(3), &["easy".to_string()][..]));
        assert_eq!((m[0].endpoint.as_deref(), m[0].api.as_deref()), (Some("http://h:1/v1"), Some("chat")));
        assert_eq!(r.remote.map(|x| x.requests), Some(2));
    }
}
