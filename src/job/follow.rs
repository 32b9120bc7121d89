//! The coordinator, on worker 0: lists the sources, cuts the objects not read yet into
//! *segments* (the units between checkpoints), and with `--follow` polls for more until stopped.
//!
//! Only worker 0 lists, and every worker gets the same segment through the control dataflow,
//! so objects that land while workers list cannot be read twice or missed. A segment is cut when
//! it is handed out: at most `files` objects and `bytes` bytes and, with an `interval`, about as
//! many bytes as the job processed in that much time at its measured rate (at least one object:
//! objects are the smallest unit of a checkpoint). Objects are taken in
//! lexical order of their paths; an object already read whose size or tag changes is reported
//! (once, in the manifest and the log), not read again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wrapflow_operators::io::store::Location;
use wrapflow_operators::sql::source::{Format, Skipped, list_with_skips, object_name};

use crate::job::checkpoint::Commit;
use crate::report::manifest::{Changed, FileStamp};

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
    /// Aim for a checkpoint this often: segments are sized by the measured bytes per second.
    pub interval: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { files: 16, bytes: 256 << 20, interval: None }
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
    /// Objects under the sources that are not read, with why, per table.
    pub skipped: BTreeMap<String, BTreeMap<String, Skipped>>,
    /// Listed objects not handed out yet, in listing order.
    queue: VecDeque<(String, FileStamp)>,
    in_flight: Option<(Files, Instant)>,
    follow: Option<Duration>,
    limits: Limits,
    listed: bool,
    /// When a follow job lists its sources again.
    next_list: Option<Instant>,
    /// Input bytes per second of the segments committed so far (a moving average).
    rate: Option<f64>,
}

fn count(f: &Files) -> (u64, u64) {
    f.values().flatten().fold((0, 0), |a, s| (a.0 + 1, a.1 + s.size))
}

impl Coordinator {
    pub fn new(sources: Vec<Source>, resume: Option<&Commit>, follow: Option<Duration>, limits: Limits) -> Self {
        // (Skipped objects are carried over from the commit, so a resumed job lists them still.)
        let named = |t: &String, f: &FileStamp| match sources.iter().find(|s| &s.table == t) {
            Some(s) => FileStamp { path: crate::job::checkpoint::stamp_name(&s.location, &f.path), ..f.clone() },
            None => f.clone(),
        };
        let committed: Files = resume
            .map(|c| c.seen.iter().map(|(t, v)| (t.clone(), v.iter().map(|f| named(t, f)).collect())).collect())
            .unwrap_or_default();
        let change =
            |x: &Changed| Changed { read: named(&x.table, &x.read), now: named(&x.table, &x.now), ..x.clone() };
        let changed = resume.map(|c| c.changed.iter().map(change).collect()).unwrap_or_default();
        let handed = committed
            .iter()
            .map(|(t, v)| (t.clone(), v.iter().map(|s| (s.path.clone(), s.clone())).collect()))
            .collect();
        Coordinator {
            sources,
            handed,
            committed,
            changed,
            skipped: resume
                .map(|c| {
                    c.skipped
                        .iter()
                        .map(|(t, v)| (t.clone(), v.iter().map(|s| (s.path.clone(), s.clone())).collect()))
                        .collect()
                })
                .unwrap_or_default(),
            queue: VecDeque::new(),
            in_flight: None,
            follow,
            limits,
            listed: false,
            next_list: None,
            rate: None,
        }
    }

    /// Objects (and bytes) listed but not yet committed.
    pub fn pending(&self) -> (u64, u64) {
        let queued = self.queue.iter().fold((0, 0), |a, (_, s)| (a.0 + 1, a.1 + s.size));
        let in_flight = self.in_flight.as_ref().map_or((0, 0), |f| count(&f.0));
        (queued.0 + in_flight.0, queued.1 + in_flight.1)
    }

    /// The most bytes the next segment may hold.
    fn byte_budget(&self) -> u64 {
        match self.limits.interval {
            // The first segment is one object: it measures the rate.
            Some(every) => self.rate.map_or(0, |r| (r * every.as_secs_f64()) as u64).min(self.limits.bytes),
            None => self.limits.bytes,
        }
    }

    /// Cuts the next segment from the front of the queue (at least one object).
    fn cut(&mut self) -> Option<Files> {
        let budget = self.byte_budget();
        let mut seg = Files::new();
        while let Some((table, stamp)) = self.queue.pop_front() {
            let (files, bytes) = count(&seg);
            if files > 0 && (files as usize >= self.limits.files || bytes + stamp.size > budget) {
                self.queue.push_front((table, stamp));
                break;
            }
            seg.entry(table).or_default().push(stamp);
        }
        (!seg.is_empty()).then_some(seg)
    }

    /// Lists every source and queues the new objects as segments.
    async fn list(&mut self) -> anyhow::Result<usize> {
        let mut new: Vec<(String, FileStamp)> = Vec::new();
        let reported: BTreeSet<(String, String)> =
            self.changed.iter().map(|c| (c.table.clone(), c.now.path.clone())).collect();
        for s in &self.sources {
            let (metas, skipped) = list_with_skips(&s.location, s.format).await?;
            let known = self.skipped.entry(s.table.clone()).or_default();
            for k in skipped {
                if !known.contains_key(&k.path) {
                    tracing::warn!(table = %s.table, path = %k.path, reason = %k.reason, "not read");
                    known.insert(k.path.clone(), k);
                }
            }
            for m in metas {
                // Named as records and the manifest name the object.
                let name = object_name(&s.location, &m.location);
                let stamp = FileStamp { path: name.clone(), size: m.size, e_tag: m.e_tag.clone() };
                match self.handed.get(&s.table).and_then(|h| h.get(&stamp.path)) {
                    None => new.push((s.table.clone(), stamp)),
                    Some(read) if read.size != stamp.size || (read.e_tag.is_some() && read.e_tag != stamp.e_tag) => {
                        if !reported.contains(&(s.table.clone(), name.clone())) {
                            tracing::warn!(table = %s.table, path = %name, "an input object changed after it was read: not read again");
                            self.changed.push(Changed { table: s.table.clone(), read: read.clone(), now: stamp });
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        let n = new.len();
        for (table, stamp) in new {
            self.handed.entry(table.clone()).or_default().insert(stamp.path.clone(), stamp.clone());
            self.queue.push_back((table, stamp));
        }
        Ok(n)
    }

    /// The next instruction for segment `seq`; in follow mode `None` when there is no input yet
    /// after waiting at most a second (call again: the listing repeats every `poll`), so that the
    /// caller can hear of failed peers in between.
    pub async fn next(&mut self, seq: u64, stop: &AtomicBool) -> anyhow::Result<Option<Control>> {
        if !self.listed {
            self.listed = true;
            let n = self.list().await?;
            if n == 0 && self.follow.is_none() && self.committed.is_empty() {
                let s = &self.sources[0];
                anyhow::bail!("no {:?} input files at {}", s.format, s.location.url);
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(Some(Control::Stop { seq, finish: false }));
        }
        if let Some(files) = self.cut() {
            self.in_flight = Some((files.clone(), Instant::now()));
            return Ok(Some(Control::Segment { seq, files }));
        }
        let Some(poll) = self.follow else { return Ok(Some(Control::Stop { seq, finish: true })) };
        let due = *self.next_list.get_or_insert_with(|| Instant::now() + poll);
        let until = due.min(Instant::now() + Duration::from_secs(1));
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50).min(poll)).await;
        }
        if Instant::now() >= due && !stop.load(Ordering::Relaxed) {
            self.next_list = None;
            self.list().await?;
        }
        Ok(None)
    }

    /// Bytes of every object listed so far (read, being read or waiting): the progress total.
    pub fn listed_bytes(&self) -> u64 {
        self.handed.values().flat_map(|h| h.values()).map(|s| s.size).sum()
    }

    /// Skipped objects per table, for the commit and the manifest.
    pub fn skipped_list(&self) -> BTreeMap<String, Vec<Skipped>> {
        self.skipped.iter().map(|(t, m)| (t.clone(), m.values().cloned().collect())).collect()
    }

    /// The segment handed out last is committed.
    pub fn committed_segment(&mut self) {
        if let Some((files, started)) = self.in_flight.take() {
            let rate = count(&files).1 as f64 / started.elapsed().as_secs_f64().max(1e-3);
            self.rate = Some(self.rate.map_or(rate, |r| (r + rate) / 2.0));
            if let Some(every) = self.limits.interval
                && started.elapsed() > every * 2
            {
                tracing::warn!(
                    took_s = started.elapsed().as_secs(),
                    objects = count(&files).0,
                    "a segment took over twice the checkpoint interval: one input object is the smallest \
                     unit of a checkpoint (rephrasings inside it are journaled)"
                );
            }
            for (t, v) in files {
                self.committed.entry(t).or_default().extend(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(limits: Limits, objects: usize) -> Coordinator {
        let mut c = Coordinator::new(Vec::new(), None, None, limits);
        for i in 0..objects {
            let stamp = FileStamp { path: format!("part-{i:02}"), size: 100, e_tag: None };
            c.queue.push_back(("raw".into(), stamp));
        }
        c
    }

    fn commit_after(c: &mut Coordinator, files: Files, secs: u64) {
        c.in_flight = Some((files, Instant::now() - Duration::from_secs(secs)));
        c.committed_segment();
    }

    #[test]
    fn segments_are_cut_by_count_and_bytes() {
        let mut c = coordinator(Limits { files: 4, bytes: 250, interval: None }, 10);
        let sizes: Vec<u64> = std::iter::from_fn(|| c.cut()).map(|f| count(&f).0).collect();
        assert_eq!(sizes, [2, 2, 2, 2, 2]);
        let mut c = coordinator(Limits { files: 4, bytes: 1 << 20, interval: None }, 10);
        let sizes: Vec<u64> = std::iter::from_fn(|| c.cut()).map(|f| count(&f).0).collect();
        assert_eq!(sizes, [4, 4, 2]);
    }

    #[test]
    fn with_an_interval_segments_follow_the_measured_rate() {
        let mut c = coordinator(Limits { files: 100, bytes: 1 << 20, interval: Some(Duration::from_millis(3500)) }, 20);
        let first = c.cut().unwrap();
        assert_eq!(count(&first).0, 1, "the first segment measures the rate");
        // 100 bytes in 1 s: 3.5 s of input is 3 objects.
        commit_after(&mut c, first, 1);
        let second = c.cut().unwrap();
        assert_eq!(count(&second).0, 3);
        // 300 bytes in 1 s (the average is now 200 B/s): 700 bytes, 6 whole objects (and a bit).
        commit_after(&mut c, second, 1);
        assert_eq!(count(&c.cut().unwrap()).0, 6);
        assert_eq!(c.committed["raw"].len(), 4);
    }
}
