//! Checkpoints in the output store: what a job has committed, and how to resume from it.
//!
//! A job reads its input in *segments* (groups of whole files). After a segment every worker's
//! dataflow is quiescent; each worker saves the state its operators registered
//! ([`wrapflow_operators::state::checkpoint`]) and its report under
//! `_wrapflow/state/c<id>/w<worker>/`, then worker 0 writes `_wrapflow/checkpoints/c<id>.json`.
//! That single put is the commit: the output shards named by the committed reports are the job's
//! output, anything else (shards of a segment in progress when the job died) is removed on resume.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use wrapflow_operators::MixEvent;
use wrapflow_operators::io::store::Location;

use crate::report::manifest::{Changed, FileStamp};
use crate::report::merge::WorkerReport;

pub const STATE_DIR: &str = "_wrapflow/state";
pub const COMMIT_DIR: &str = "_wrapflow/checkpoints";
/// Output directories whose files are committed by checkpoints.
const OUTPUT_DIRS: [&str; 4] = ["chunks", "synthetic", "rejects", "mix"];
/// Delta parts a state may chain before it is saved whole again.
pub const MAX_CHAIN: usize = 16;

/// What one worker saved at a checkpoint.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct WorkerIndex {
    pub report: WorkerReport,
    /// Per registered state, its parts in load order (a full one first).
    pub chains: BTreeMap<String, Vec<String>>,
}

/// A committed checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Commit {
    pub id: u64,
    pub plan_hash: String,
    /// Workers of all processes: a resume must use as many (state is kept per worker).
    pub workers: usize,
    /// The first segment not covered.
    pub next_segment: u64,
    /// The input is over and every stage has flushed: nothing left to resume.
    pub finished: bool,
    pub committed_at: String,
    /// Input objects fully consumed, per table, by the names records give them (relative to the
    /// table's location; checkpoints of earlier versions hold store keys, read with
    /// [`stamp_name`]).
    pub seen: BTreeMap<String, Vec<FileStamp>>,
    /// Inputs that changed after they were read, named as records and the manifest name them
    /// (relative to the table's location).
    pub changed: Vec<Changed>,
    /// Objects under the inputs that are not read, with why, per table.
    #[serde(default)]
    pub skipped: BTreeMap<String, Vec<wrapflow_operators::sql::source::Skipped>>,
    /// Each worker's [`WorkerIndex`], by worker.
    pub indexes: Vec<String>,
    /// Every state object this checkpoint needs (indexes and parts).
    pub state_files: Vec<String>,
}

pub fn commit_path(id: u64) -> String {
    format!("{COMMIT_DIR}/c{id:08}.json")
}

/// Where worker `worker` saves its state for checkpoint `id`.
pub fn state_dir(id: u64, worker: usize) -> String {
    format!("{STATE_DIR}/c{id:08}/w{worker:05}")
}

/// A state name as a file name.
pub fn part_name(state: &str) -> String {
    state.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

pub async fn put(out: &Location, rel: &str, data: Vec<u8>) -> anyhow::Result<()> {
    out.store
        .put(&out.child(rel), PutPayload::from(data))
        .await
        .with_context(|| format!("writing {}/{rel}", out.url))?;
    Ok(())
}

/// Writes `manifest.json` and, with `card`, the dataset card made from it (`README.md`).
pub async fn put_manifest(
    out: &Location,
    manifest: &crate::report::manifest::Manifest,
    card: bool,
) -> anyhow::Result<()> {
    use crate::report::card::{CARD, Origin, card as card_of};
    put(out, "manifest.json", serde_json::to_vec_pretty(manifest)?).await?;
    if card {
        put(out, CARD, card_of(manifest, &Origin::Run).into_bytes()).await?;
    }
    Ok(())
}

pub async fn get(out: &Location, rel: &str) -> anyhow::Result<Vec<u8>> {
    let got = out.store.get(&out.child(rel)).await.with_context(|| format!("reading {}/{rel}", out.url))?;
    Ok(got.bytes().await.with_context(|| format!("reading {}/{rel}", out.url))?.to_vec())
}

/// Paths (relative to `out`) of the objects below `dir`.
async fn list(out: &Location, dir: &str) -> anyhow::Result<Vec<String>> {
    let prefix = out.child(dir);
    let metas: Vec<_> =
        out.store.list(Some(&prefix)).try_collect().await.with_context(|| format!("listing {}/{dir}", out.url))?;
    Ok(metas.into_iter().map(|m| out.relative(&m.location)).collect())
}

/// The newest committed checkpoint, if any.
pub async fn latest(out: &Location) -> anyhow::Result<Option<Commit>> {
    let newest = list(out, COMMIT_DIR)
        .await?
        .into_iter()
        .filter_map(|p| {
            let name = p.rsplit('/').next()?.to_string();
            name.strip_prefix('c')?.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max();
    let Some(id) = newest else { return Ok(None) };
    let bytes = get(out, &commit_path(id)).await?;
    let commit = serde_json::from_slice(&bytes).with_context(|| format!("decoding {}", commit_path(id)))?;
    Ok(Some(commit))
}

/// The workers' indexes of a commit, by worker.
pub async fn indexes(out: &Location, commit: &Commit) -> anyhow::Result<Vec<WorkerIndex>> {
    let mut all = Vec::new();
    for p in &commit.indexes {
        let bytes = get(out, p).await?;
        all.push(serde_json::from_slice(&bytes).with_context(|| format!("decoding {p}"))?);
    }
    Ok(all)
}

/// Output files named by reports: shards of every sink and mixture.
pub fn committed_files(reports: &[WorkerReport]) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for r in reports {
        files.extend(r.shards.iter().chain(&r.reject_shards).chain(&r.synthetic_shards).map(|s| s.path.clone()));
        for e in &r.mix {
            if let MixEvent::Shard(s) = e {
                files.insert(s.path.clone());
            }
        }
    }
    files
}

/// A mixture's shard is several files sharing a stem (`.bin`, `.idx`, `.meta.parquet`).
fn stem(path: &str) -> &str {
    let name_at = path.rfind('/').map_or(0, |i| i + 1);
    match path[name_at..].find('.') {
        Some(dot) => &path[..name_at + dot],
        None => path,
    }
}

/// Removes what a dead job left uncommitted: output files no commit names and state saved for
/// checkpoints after `commit`, but only objects the output's marker says wrapflow wrote
/// ([`crate::job::output::Marker::owns`]). Returns how many objects it removed.
pub async fn clean_uncommitted(
    out: &Location,
    commit: Option<&Commit>,
    reports: &[WorkerReport],
    owner: &crate::job::output::Marker,
) -> anyhow::Result<usize> {
    let committed = committed_files(reports);
    let stems: BTreeSet<&str> = committed.iter().map(|p| stem(p)).collect();
    let mut doomed = Vec::new();
    for dir in OUTPUT_DIRS {
        for p in list(out, dir).await? {
            let kept = committed.contains(&p) || (dir == "mix" && stems.contains(stem(&p)));
            if !kept && owner.owns(&p) {
                doomed.push(p);
            }
        }
    }
    let keep: BTreeSet<&String> = commit.map(|c| c.state_files.iter().collect()).unwrap_or_default();
    let last = commit.map(|c| c.id);
    for p in list(out, STATE_DIR).await? {
        let id = p.strip_prefix(&format!("{STATE_DIR}/c")).and_then(|r| r.get(..8)).and_then(|d| d.parse::<u64>().ok());
        if !keep.contains(&p) && owner.owns(&p) && (last.is_none() || id.is_some_and(|i| Some(i) > last)) {
            doomed.push(p);
        }
    }
    // A local store writes `name#N` and renames it: a killed job can leave such a file, which
    // object_store's listing does not show.
    if let Some(root) = out.local_dir() {
        // The output folders, wrapflow's own, and the files at the top (`manifest.json#N`).
        let mut files: Vec<_> = OUTPUT_DIRS.iter().chain(&["_wrapflow"]).flat_map(|d| walk(&root.join(d))).collect();
        let top = std::fs::read_dir(&root).into_iter().flatten().flatten();
        files.extend(top.filter(|e| e.file_type().is_ok_and(|t| t.is_file())).map(|e| e.path()));
        for f in files {
            let rel = f.strip_prefix(&root).map(|r| r.to_string_lossy().to_string()).unwrap_or_default();
            let partial = rel
                .rsplit_once('#')
                .filter(|(base, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && owner.owns(base));
            if partial.is_some() && !owner.preexisting.contains(&rel) {
                tracing::info!(path = %f.display(), "removing a partial file of a killed job");
                std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
    }
    for p in &doomed {
        tracing::info!(path = %p, "removing an uncommitted object");
        out.store.delete(&out.child(p)).await.with_context(|| format!("removing {}/{p}", out.url))?;
    }
    Ok(doomed.len())
}

/// Files below `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            // Never through a link: the output is checked to hold none, and this keeps it so.
            let dir = e.file_type().is_ok_and(|t| t.is_dir());
            if dir { stack.push(e.path()) } else { out.push(e.path()) }
        }
    }
    out
}

/// Deletes commits older than the last `keep` and state objects none of those needs.
pub async fn prune(out: &Location, kept: &[&Commit]) -> anyhow::Result<()> {
    let oldest = kept.iter().map(|c| c.id).min().unwrap_or(0);
    for p in list(out, COMMIT_DIR).await? {
        let id = p.rsplit('/').next().and_then(|n| n.strip_prefix('c')?.strip_suffix(".json")?.parse::<u64>().ok());
        if id.is_some_and(|i| i < oldest) {
            out.store.delete(&out.child(&p)).await?;
        }
    }
    let needed: BTreeSet<&String> = kept.iter().flat_map(|c| c.state_files.iter()).collect();
    for p in list(out, STATE_DIR).await? {
        let id = p.strip_prefix(&format!("{STATE_DIR}/c")).and_then(|r| r.get(..8)).and_then(|d| d.parse::<u64>().ok());
        // Newer state belongs to a checkpoint being written.
        if !needed.contains(&p) && id.is_some_and(|i| i <= kept.iter().map(|c| c.id).max().unwrap_or(0)) {
            out.store.delete(&out.child(&p)).await?;
        }
    }
    Ok(())
}

/// Deletes journal entries of segments before `next_segment`: their results are committed.
pub async fn prune_journal(out: &Location, dir: &str, next_segment: u64) -> anyhow::Result<()> {
    for p in list(out, dir).await? {
        let seg = p.strip_prefix(&format!("{dir}/s")).and_then(|r| r.get(..8)).and_then(|d| d.parse::<u64>().ok());
        if seg.is_some_and(|s| s < next_segment) {
            out.store.delete(&out.child(&p)).await?;
        }
    }
    Ok(())
}

/// The store path of an input object from its name (as [`FileStamp`]s and records name it:
/// relative to the location, or the file name when the location is the object itself).
pub async fn object_path(loc: &Location, name: &str) -> Path {
    let prefix = loc.prefix.as_ref();
    // Names are in the store's own (encoded) form: `parse` keeps them as they are.
    let joined = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
    let joined = Path::parse(&joined).unwrap_or_else(|_| Path::from(joined.as_str()));
    // Only a location that is the object itself has its file name as the object's name.
    if loc.prefix.filename() == Some(name) && loc.store.head(&loc.prefix).await.is_ok() {
        return loc.prefix.clone();
    }
    joined
}

/// The name of a stamp a checkpoint of an earlier version holds as a store key.
pub fn stamp_name(loc: &Location, stored: &str) -> String {
    let key = Path::parse(stored).ok();
    match key.filter(|k| !loc.prefix.as_ref().is_empty() && k.prefix_match(&loc.prefix).is_some()) {
        Some(k) => wrapflow_operators::sql::source::object_name(loc, &k),
        None => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};
    use wrapflow_operators::io::store::StoreRegistry;

    use super::*;

    #[tokio::test]
    async fn stamps_name_objects_as_records_do_and_find_them_again() {
        let reg = StoreRegistry::new();
        let none = Default::default();
        let folder = reg.resolve("memory://b/in", &none).unwrap();
        let file = reg.resolve("memory://b/one.jsonl", &none).unwrap();
        for key in ["in/a.jsonl", "in/sub/c.jsonl", "in/in", "one.jsonl"] {
            folder.store.put(&Path::from(key), PutPayload::from("{}")).await.unwrap();
        }
        // Names are relative to a folder, or the file name of a location that is one object.
        assert_eq!(object_path(&folder, "a.jsonl").await, Path::from("in/a.jsonl"));
        assert_eq!(object_path(&folder, "sub/c.jsonl").await, Path::from("in/sub/c.jsonl"));
        assert_eq!(object_path(&folder, "in").await, Path::from("in/in"), "an object named like its folder");
        assert_eq!(object_path(&file, "one.jsonl").await, Path::from("one.jsonl"));
        // A checkpoint of an earlier version holds store keys: they become names.
        assert_eq!(stamp_name(&folder, "in/sub/c.jsonl"), "sub/c.jsonl");
        assert_eq!(stamp_name(&file, "one.jsonl"), "one.jsonl");
        assert_eq!(stamp_name(&folder, "sub/c.jsonl"), "sub/c.jsonl", "a name stays a name");
    }
}
