//! Listing an input location: which objects a source reads, in input order, and which it does
//! not read and why (hidden or `_` names, wrapflow's own output, unknown formats, and on local
//! disk symbolic links whose target is missing or that loop).

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::io::store::Location;

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Parquet,
    Text,
}

impl Format {
    pub fn accepts(self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let n = name.trim_end_matches(".gz").trim_end_matches(".zst").trim_end_matches(".zstd");
        match self {
            Format::Jsonl => [".jsonl", ".json", ".ndjson"].iter().any(|e| n.ends_with(e)),
            Format::Parquet => name.ends_with(".parquet"),
            Format::Text => n.ends_with(".txt") || n.ends_with(".md"),
        }
    }

    /// The names it takes, for messages.
    fn expects(self) -> &'static str {
        match self {
            Format::Jsonl => ".jsonl, .json or .ndjson, plain, .gz or .zst",
            Format::Parquet => ".parquet",
            Format::Text => ".txt or .md, plain, .gz or .zst",
        }
    }
}

/// Objects under a location, in a stable order: the location itself if it is an object,
/// otherwise everything below it that the format accepts (hidden and `_` files skipped).
/// Fails when there are none.
pub async fn list_inputs(location: &Location, format: Format) -> anyhow::Result<Vec<ObjectMeta>> {
    let metas = list_objects(location, format).await?;
    anyhow::ensure!(!metas.is_empty(), "no {format:?} input files at {}", location.url);
    Ok(metas)
}

/// [`list_inputs`], where none is an empty list (a followed prefix may start empty).
pub async fn list_objects(location: &Location, format: Format) -> anyhow::Result<Vec<ObjectMeta>> {
    Ok(list_with_skips(location, format).await?.0)
}

/// How records name the object they come from (`source_file`): its path below the location, or
/// its file name when the location is the object itself.
pub fn object_name(location: &Location, path: &Path) -> String {
    match location.relative(path) {
        r if r.is_empty() => path.filename().unwrap_or_default().to_string(),
        r => r,
    }
}

/// An object under an input location that is not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Why an object below an input location is not read, if it is not: a hidden or `_` name
/// anywhere below the location, wrapflow's own output files, or a name the format does not take.
fn skip_reason(location: &Location, meta: &ObjectMeta, format: Format) -> Option<String> {
    let rel = location.relative(&meta.location);
    let parts: Vec<&str> = rel.split('/').collect();
    let (dirs, name) = parts.split_at(parts.len().saturating_sub(1));
    let name = name.first().copied().unwrap_or("");
    if parts.contains(&"_wrapflow") {
        return Some("wrapflow's own state (_wrapflow/)".into());
    }
    if matches!(name, "manifest.json" | "report.html" | "remix.json") {
        return Some("a wrapflow manifest or report".into());
    }
    if let Some(d) = dirs.iter().find(|d| d.starts_with('.') || d.starts_with('_')) {
        return Some(format!("in a hidden or `_` folder ({d}/)"));
    }
    if name.starts_with('.') || name.starts_with('_') {
        return Some("a hidden or `_` name".into());
    }
    if !format.accepts(name) {
        return Some(format!("unknown format for {format:?} ({})", format.expects()));
    }
    None
}

/// The folder (with its `/`) of the wrapflow output that holds `rel`, a path below an input
/// location, if `rel` is inside `_wrapflow/` of a folder below the location.
fn output_root(rel: &str) -> Option<String> {
    let at = rel.find("/_wrapflow/")?;
    Some(rel[..at + 1].to_string())
}

/// Symbolic links below a local folder whose target is missing (object_store's listing passes
/// over them without a word).
fn dangling_links(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path_is_symlink() && std::fs::metadata(e.path()).is_err())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// The path a local listing error is about, if it says.
fn walk_error_path(e: &object_store::Error) -> Option<std::path::PathBuf> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(w) = err.downcast_ref::<walkdir::Error>() {
            return w.path().map(std::path::Path::to_path_buf);
        }
        cur = err.source();
    }
    None
}

fn relative_to(dir: &std::path::Path, p: &std::path::Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).to_string_lossy().into_owned()
}

/// The objects to read under a location, sorted, and those not read with the reason.
pub async fn list_with_skips(location: &Location, format: Format) -> anyhow::Result<(Vec<ObjectMeta>, Vec<Skipped>)> {
    if !location.prefix.as_ref().is_empty()
        && let Ok(meta) = location.store.head(&location.prefix).await
    {
        return Ok((vec![meta], vec![]));
    }
    let (mut metas, mut skipped) = (Vec::new(), Vec::new());
    let local = location.local_dir();
    let mut all: Vec<ObjectMeta> = Vec::new();
    let mut listing = location.store.list(Some(&location.prefix));
    while let Some(item) = listing.next().await {
        match (item, &local) {
            (Ok(m), _) => all.push(m),
            // A local entry that cannot be walked (a symbolic link loop, a folder without read
            // permission) is not read, and said so; it does not stop the listing.
            (Err(e), Some(dir)) => skipped.push(Skipped {
                path: walk_error_path(&e).map_or_else(|| "?".into(), |p| relative_to(dir, &p)),
                reason: format!("cannot be listed: {e}"),
            }),
            (Err(e), None) => anyhow::bail!("cannot list {}: {e}", location.url),
        }
    }
    if let Some(dir) = &local {
        for link in dangling_links(dir) {
            let reason = "a symbolic link whose target does not exist".to_string();
            skipped.push(Skipped { path: relative_to(dir, &link), reason });
        }
    }
    // A wrapflow output below the location (a folder holding `_wrapflow/`) is never read, not
    // even its shards: a job would read back what it writes. It is listed once, as a folder.
    let outputs: std::collections::BTreeSet<String> =
        all.iter().filter_map(|m| output_root(&location.relative(&m.location))).collect();
    for root in &outputs {
        let reason = "a wrapflow output (it holds _wrapflow/): not read".to_string();
        skipped.push(Skipped { path: root.clone(), reason });
    }
    for m in all {
        let rel = location.relative(&m.location);
        if outputs.iter().any(|root| rel.starts_with(root.as_str())) {
            continue;
        }
        match skip_reason(location, &m, format) {
            Some(reason) => skipped.push(Skipped { path: object_name(location, &m.location), reason }),
            None => metas.push(m),
        }
    }
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((metas, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::store::StoreRegistry;

    #[tokio::test]
    async fn dangling_and_looping_links_are_skipped_with_their_reason() {
        let dir = tempfile::TempDir::new().unwrap();
        let root = dir.path().join("in");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.jsonl"), "{}\n").unwrap();
        std::fs::write(root.join("sub/b.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink(root.join("missing.jsonl"), root.join("gone.jsonl")).unwrap();
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        let loc = StoreRegistry::new().resolve(root.to_str().unwrap(), &Default::default()).unwrap();
        let (metas, skipped) = list_with_skips(&loc, Format::Jsonl).await.unwrap();
        let read: Vec<String> = metas.iter().map(|m| loc.relative(&m.location)).collect();
        assert_eq!(read, ["a.jsonl", "sub/b.jsonl"]);
        let why: Vec<(&str, &str)> = skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert_eq!(why[0], ("gone.jsonl", "a symbolic link whose target does not exist"));
        assert!(why[1].0 == "sub/loop" && why[1].1.contains("cannot be listed"), "{why:?}");
    }
}
