//! The coordinator, on worker 0: lists the sources, cuts the objects not read yet into
//! *segments* (the units between checkpoints), and with `--follow` polls for more until stopped.
//!
//! Only worker 0 lists, and every worker gets the same segment through the control dataflow,
//! so objects that land while workers list cannot be read twice or missed. Objects are taken in
//! lexical order of their paths; an object already read whose size or tag changes is reported
//! (once, in the manifest and the log), not read again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wrapflow_operators::source::{Format, list_objects};
use wrapflow_operators::store::Location;

use crate::checkpoint::{Changed, Commit, FileStamp};

/// What worker 0 tells every worker to do next.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Control {
    /// Read these objects (per table) as segment `seq`, then checkpoint.
    Segment { seq: u64, files: BTreeMap<String, Vec<FileStamp>> },
    /// Stop at segment `seq`: flush every stage and finish (`finish`), or leave the state as the
    /// last checkpoint has it, to resume later.
    Stop { seq: u64, finish: bool },
}

/// How big a segment may get: a checkpoint follows each one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub files: usize,
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { files: 16, bytes: 256 << 20 }
    }
}

/// A source to list.
pub struct Source {
    pub table: String,
    pub location: Location,
    pub format: Format,
}

type Files = BTreeMap<String, Vec<FileStamp>>;

pub struct Coordinator {
    sources: Vec<Source>,
    /// Every object handed out, committed or not, per table and path.
    handed: BTreeMap<String, BTreeMap<String, FileStamp>>,
    /// Objects of committed segments.
    pub committed: Files,
    pub changed: Vec<Changed>,
    queue: VecDeque<Files>,
    in_flight: Option<Files>,
    follow: Option<Duration>,
    limits: Limits,
    listed: bool,
}

fn count(f: &Files) -> (u64, u64) {
    f.values().flatten().fold((0, 0), |a, s| (a.0 + 1, a.1 + s.size))
}

impl Coordinator {
    pub fn new(sources: Vec<Source>, resume: Option<&Commit>, follow: Option<Duration>, limits: Limits) -> Self {
        let committed: Files = resume.map(|c| c.seen.clone()).unwrap_or_default();
        let handed = committed
            .iter()
            .map(|(t, v)| (t.clone(), v.iter().map(|s| (s.path.clone(), s.clone())).collect()))
            .collect();
        Coordinator {
            sources,
            handed,
            committed,
            changed: resume.map(|c| c.changed.clone()).unwrap_or_default(),
            queue: VecDeque::new(),
            in_flight: None,
            follow,
            limits,
            listed: false,
        }
    }

    /// Objects (and bytes) listed but not yet committed.
    pub fn pending(&self) -> (u64, u64) {
        let mut n = (0, 0);
        for f in self.queue.iter().chain(&self.in_flight) {
            let c = count(f);
            n = (n.0 + c.0, n.1 + c.1);
        }
        n
    }

    /// Lists every source and queues the new objects as segments.
    async fn list(&mut self) -> anyhow::Result<usize> {
        let mut new: Vec<(String, FileStamp)> = Vec::new();
        let reported: BTreeSet<(String, String)> =
            self.changed.iter().map(|c| (c.table.clone(), c.now.path.clone())).collect();
        for s in &self.sources {
            for m in list_objects(&s.location, s.format).await? {
                let stamp = FileStamp { path: m.location.to_string(), size: m.size, e_tag: m.e_tag.clone() };
                match self.handed.get(&s.table).and_then(|h| h.get(&stamp.path)) {
                    None => new.push((s.table.clone(), stamp)),
                    Some(read) if read.size != stamp.size || (read.e_tag.is_some() && read.e_tag != stamp.e_tag) => {
                        if !reported.contains(&(s.table.clone(), stamp.path.clone())) {
                            tracing::warn!(table = %s.table, path = %stamp.path, "an input object changed after it was read: not read again");
                            self.changed.push(Changed { table: s.table.clone(), read: read.clone(), now: stamp });
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        let n = new.len();
        let mut seg = Files::new();
        for (table, stamp) in new {
            let (files, bytes) = count(&seg);
            if files > 0 && (files as usize >= self.limits.files || bytes + stamp.size > self.limits.bytes) {
                self.queue.push_back(std::mem::take(&mut seg));
            }
            self.handed.entry(table.clone()).or_default().insert(stamp.path.clone(), stamp.clone());
            seg.entry(table).or_default().push(stamp);
        }
        if !seg.is_empty() {
            self.queue.push_back(seg);
        }
        Ok(n)
    }

    /// The next instruction for segment `seq`: waits (polling) in follow mode until there is
    /// input or `stop` is set.
    pub async fn next(&mut self, seq: u64, stop: &AtomicBool) -> anyhow::Result<Control> {
        if !self.listed {
            self.listed = true;
            let n = self.list().await?;
            if n == 0 && self.follow.is_none() && self.committed.is_empty() {
                let s = &self.sources[0];
                anyhow::bail!("no {:?} input files at {}", s.format, s.location.url);
            }
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(Control::Stop { seq, finish: false });
            }
            if let Some(files) = self.queue.pop_front() {
                self.in_flight = Some(files.clone());
                return Ok(Control::Segment { seq, files });
            }
            let Some(poll) = self.follow else { return Ok(Control::Stop { seq, finish: true }) };
            let woke = Instant::now();
            while woke.elapsed() < poll && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50).min(poll)).await;
            }
            if !stop.load(Ordering::Relaxed) {
                self.list().await?;
            }
        }
    }

    /// The segment handed out last is committed.
    pub fn committed_segment(&mut self) {
        if let Some(files) = self.in_flight.take() {
            for (t, v) in files {
                self.committed.entry(t).or_default().extend(v);
            }
        }
    }
}
