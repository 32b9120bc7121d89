//! Rows to look at in `report.html`: per style, a few accepted and a few rejected rephrasings
//! beside their source chunk. They are chosen by a hash of document, chunk and style (the same
//! rows on every rerun), among the rows of the first [`SHARDS`] synthetic and reject shards; the
//! source chunks are looked up in the chunk shards in order.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt32Type;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use wrapflow_operators::ShardInfo;
use wrapflow_operators::io::store::Location;

use crate::report::manifest::Manifest;

/// Samples of each kind per style.
pub const PER_STYLE: usize = 3;
/// Shards read for samples (and chunk shards searched for their sources).
pub const SHARDS: usize = 4;

/// A rephrasing to look at, with its source chunk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub style: String,
    pub doc_id: String,
    pub chunk_index: u32,
    pub accepted: bool,
    pub source: String,
    pub text: String,
    /// Why the gates rejected it (empty when accepted).
    pub reason: String,
    /// The sentences the support gate found no source sentence for (from the reject's scores).
    pub unsupported: Vec<String>,
}

fn rank(s: &Sample) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{}\u{0}{}\u{0}{}", s.doc_id, s.chunk_index, s.style).as_bytes())
}

async fn parquet(loc: &Location, path: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let bytes: Bytes = loc.store.get(&loc.child(path)).await?.bytes().await?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?.collect::<Result<Vec<_>, _>>()?)
}

/// (doc_id, chunk_index, style, text) of every row of a batch.
fn rows(b: &RecordBatch) -> Vec<(String, u32, String, String)> {
    let str_col = |n: &str| b.column_by_name(n).map(|c| c.as_string::<i32>().clone());
    let (Some(doc), Some(text), Some(idx)) = (
        str_col("doc_id"),
        str_col("text"),
        b.column_by_name("chunk_index").map(|c| c.as_primitive::<UInt32Type>().clone()),
    ) else {
        return vec![];
    };
    let style = str_col("style");
    (0..b.num_rows())
        .map(|i| {
            let st = style.as_ref().filter(|s| !s.is_null(i)).map_or(String::new(), |s| s.value(i).to_string());
            (doc.value(i).to_string(), idx.value(i), st, text.value(i).to_string())
        })
        .collect()
}

/// Keeps the [`PER_STYLE`] lowest-ranked samples of each style.
fn pick(mut all: Vec<Sample>) -> Vec<Sample> {
    all.sort_by_key(rank);
    let mut per: HashMap<String, usize> = HashMap::new();
    all.retain(|s| {
        let n = per.entry(s.style.clone()).or_default();
        *n += 1;
        *n <= PER_STYLE
    });
    all
}

async fn accepted(loc: &Location, shards: &[ShardInfo]) -> anyhow::Result<Vec<Sample>> {
    let mut all = Vec::new();
    for s in shards.iter().take(SHARDS) {
        for b in parquet(loc, &s.path).await? {
            all.extend(rows(&b).into_iter().map(|(doc_id, chunk_index, style, text)| Sample {
                style,
                doc_id,
                chunk_index,
                accepted: true,
                text,
                ..Default::default()
            }));
        }
    }
    Ok(pick(all))
}

/// The sentences a rejected row's reason is about, to mark in its sample: those without
/// support, and the claims a grounding gate failed on.
fn marked(gates: &serde_json::Value, reason: &str) -> Vec<String> {
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let g = &gates["grounding"];
    let mut out = list(&gates["unsupported_sentences"]);
    if reason.starts_with("coverage")
        && let Some(c) = g["weakest_claim"].as_str()
    {
        out.push(c.to_string());
    }
    for (gate, key) in [("anchors", "scattered_anchors"), ("polarity", "flipped_polarity")] {
        if reason.starts_with(gate) {
            out.extend(list(&g[key]));
        }
    }
    // The claim a claim-reading gate failed on, as its reason quotes it.
    if (reason.starts_with("entailment") || reason.starts_with("lm grounding:"))
        && let (Some(a), Some(b)) = (reason.find('"'), reason.rfind('"'))
        && a < b
    {
        out.push(reason[a + 1..b].to_string());
    }
    out
}

async fn rejected(loc: &Location, shards: &[ShardInfo]) -> anyhow::Result<Vec<Sample>> {
    let mut all = Vec::new();
    for s in shards.iter().take(SHARDS) {
        let bytes = loc.store.get(&loc.child(&s.path)).await?.bytes().await?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            let r: wrapflow_operators::Reject = serde_json::from_str(line)?;
            if r.stage == "gate" {
                let scores: serde_json::Value = serde_json::from_str(&r.scores).unwrap_or_default();
                let unsupported = marked(&scores["gates"], &r.reason);
                let (style, doc_id, chunk_index, text) = (r.style, r.doc_id, r.chunk_index, r.snippet);
                all.push(Sample {
                    style,
                    doc_id,
                    chunk_index,
                    text,
                    reason: r.reason,
                    unsupported,
                    ..Default::default()
                });
            }
        }
    }
    Ok(pick(all))
}

/// The samples of a finished run at `loc` (none for a plan that does not rephrase).
pub async fn collect(loc: &Location, m: &Manifest) -> anyhow::Result<Vec<Sample>> {
    let Some(r) = &m.rephrase else { return Ok(vec![]) };
    let mut out = accepted(loc, &r.synthetic.shards).await?;
    out.extend(rejected(loc, &m.rejects.shards).await?);
    let mut wanted: HashSet<(String, u32)> = out.iter().map(|s| (s.doc_id.clone(), s.chunk_index)).collect();
    let mut sources: BTreeMap<(String, u32), String> = BTreeMap::new();
    for s in m.chunks.shards.iter().take(SHARDS * 4) {
        if wanted.is_empty() {
            break;
        }
        for b in parquet(loc, &s.path).await? {
            for (doc, idx, _, text) in rows(&b) {
                if wanted.remove(&(doc.clone(), idx)) {
                    sources.insert((doc, idx), text);
                }
            }
        }
    }
    for s in &mut out {
        s.source = sources.get(&(s.doc_id.clone(), s.chunk_index)).cloned().unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_marks_the_claim_a_claim_reading_gate_failed_on() {
        let gates = serde_json::json!({"entailment": [{"claim": "It met.", "entailment": 0.1}]});
        let entail = "entailment: the source entails \"It cost \"5\" pounds.\" with probability 0.10, below 0.50";
        assert_eq!(marked(&gates, entail), ["It cost \"5\" pounds."]);
        let lm = "lm grounding: 40% of the tokens of \"It flew.\" are unlikely with the source";
        assert_eq!(marked(&gates, lm), ["It flew."]);
        assert!(marked(&gates, "length ratio 0.1 \"x\"").is_empty(), "other reasons mark no claim");
    }
}
