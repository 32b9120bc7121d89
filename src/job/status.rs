//! `wrapflow status OUTPUT`: where a job stands, read from its output location alone: finished
//! (its manifest's counts), or running / stopped at a checkpoint (what the last checkpoint
//! committed, how old it is, how much input was waiting), and the shards written so far per
//! directory with how long ago the newest one landed. Shards are written with one atomic put
//! each, so what is listed is complete; shards newer than the last checkpoint are not committed
//! yet (a resume removes them and writes them again).

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::TryStreamExt;
use wrapflow_operators::io::store::StoreRegistry;

/// Files, bytes and newest write time under one output directory.
#[derive(Debug, Default, PartialEq)]
pub struct DirStatus {
    pub files: u64,
    pub bytes: u64,
    pub newest: Option<SystemTime>,
}

/// The job's state: its manifest if it finished, and what each output directory holds.
#[derive(Debug)]
pub struct Status {
    pub url: String,
    /// The manifest: of the finished run, or of the last checkpoint.
    pub finished: Option<crate::report::manifest::Manifest>,
    pub checkpoint: Option<crate::job::checkpoint::Commit>,
    pub dirs: BTreeMap<String, DirStatus>,
    /// Who writes the output now, if anyone holds its lease.
    pub lease: Option<crate::job::output::LeaseDoc>,
}

impl Status {
    /// `running` while a live process holds the lease; otherwise what the manifest says, with a
    /// job that died while running told apart.
    pub fn state(&self) -> String {
        let recorded = self.finished.as_ref().and_then(|m| m.job.as_ref()).map(|j| j.status.clone());
        match (&self.lease, recorded.as_deref()) {
            (Some(l), _) if l.alive() => "running".into(),
            (Some(l), _) => format!("dead (its {} is gone; run it again to resume)", l.describe()),
            (None, Some("running")) => "dead (no job holds the output; run it again to resume)".into(),
            (None, Some(s)) => s.into(),
            (None, None) => "stopped".into(),
        }
    }
}

fn ago(rfc3339: &str) -> String {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map_or("-".into(), |d| format!("{:.0} s ago", d.as_secs_f64()))
}

/// Lists `output` (local or object storage).
pub fn read(output: &str) -> anyhow::Result<Status> {
    let loc = StoreRegistry::new().resolve(output, &Default::default())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let metas: Vec<object_store::ObjectMeta> = rt
        .block_on(loc.store.list(Some(&loc.prefix)).try_collect())
        .map_err(|e| anyhow::anyhow!("listing {}: {e}", loc.url))?;
    let mut dirs: BTreeMap<String, DirStatus> = BTreeMap::new();
    let mut has_manifest = false;
    for m in metas {
        let rel = loc.relative(&m.location);
        if rel == "manifest.json" {
            has_manifest = true;
        }
        // `mix/NAME/...` counts per mixture; everything else by its first path segment.
        let dir = match rel.split('/').collect::<Vec<_>>().as_slice() {
            ["mix", name, _, ..] => format!("mix/{name}"),
            [d, _, ..] => d.to_string(),
            _ => continue,
        };
        let d = dirs.entry(dir).or_default();
        d.files += 1;
        d.bytes += m.size;
        let t: SystemTime = m.last_modified.into();
        d.newest = Some(d.newest.map_or(t, |n| n.max(t)));
    }
    let finished = if has_manifest { Some(crate::report::text::load(output)?) } else { None };
    let checkpoint = rt.block_on(crate::job::checkpoint::latest(&loc))?;
    let lease = rt.block_on(crate::job::output::read_lease(&loc))?;
    Ok(Status { url: loc.url, finished, checkpoint, dirs, lease })
}

/// The status for people.
pub fn text(s: &Status) -> String {
    let mut out = match &s.finished {
        Some(m) if m.job.as_ref().is_some_and(|j| j.status != "finished") => {
            let j = m.job.as_ref().expect("checked");
            format!(
                "{}: {} at checkpoint {} (committed {}, {}): {} segments, {} input files done, {} files ({:.1} MB) waiting; {} read, {} kept, {} chunks, {} rejected\n",
                s.url,
                s.state(),
                j.checkpoint,
                j.committed_at,
                ago(&j.committed_at),
                j.segments,
                j.input_files,
                j.pending_files,
                j.pending_bytes as f64 / 1e6,
                m.counts.read,
                m.counts.kept,
                m.counts.chunks,
                m.counts.rejected
            ) + &j
                .changed_inputs
                .iter()
                .map(|c| format!("  changed after it was read (not read again): {}\n", c.now.path))
                .collect::<String>()
        }
        Some(m) => format!(
            "{}: finished at {} ({:.1} s): {} read, {} kept, {} chunks, {} rejected\n",
            s.url,
            m.timings.finished_at,
            m.timings.wall_s,
            m.counts.read,
            m.counts.kept,
            m.counts.chunks,
            m.counts.rejected
        ),
        None if s.dirs.is_empty() => format!("{}: nothing written yet (or not a wrapflow output)\n", s.url),
        None if s.dirs.keys().all(|d| d == "_wrapflow") => {
            format!("{}: {}: a job has taken the output, and written no shard or checkpoint yet\n", s.url, s.state())
        }
        None => format!("{}: {} before its first checkpoint (no manifest.json yet)\n", s.url, s.state()),
    };
    let now = SystemTime::now();
    for (dir, d) in &s.dirs {
        let age = d
            .newest
            .and_then(|t| now.duration_since(t).ok())
            .map_or("-".into(), |a| format!("{:.0} s ago", a.as_secs_f64()));
        out += &format!("  {dir:<24} {:>6} files {:>12} bytes   newest {age}\n", d.files, d.bytes);
    }
    out
}
