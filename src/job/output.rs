//! The output location: what wrapflow owns there, which run it holds, and who writes it now.
//!
//! - **Ownership.** A run writes `_wrapflow/owner.json` before anything else. wrapflow only
//!   ever removes objects whose names it gives ([`is_ours`]) in an output that holds its marker,
//!   and never one that was there before it took the output (`--force` lists those in the
//!   marker). A non-empty output without a marker is an error that says what is there.
//! - **Identity.** The marker holds the plan's hash, every parameter value (secrets masked,
//!   and left out of the identity) and the content hash of every file the plan names: resuming
//!   or rerunning with other settings or changed files is an error that names the differences,
//!   or with `--restart` a fresh run in place.
//! - **One writer.** `_wrapflow/lease.json` names the process that writes the output and when its
//!   lease expires; it is renewed while the job runs. A second run fails fast naming the holder;
//!   an expired lease, or one whose process is gone from this host, is taken over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use regex::Regex;
use serde::{Deserialize, Serialize};
use wrapflow_operators::io::store::Location;

use crate::job::files;
use crate::plan::Plan;

pub const MARKER: &str = "_wrapflow/owner.json";
pub const LEASE: &str = "_wrapflow/lease.json";

/// Names wrapflow gives the objects it writes, relative to the output.
static OURS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:(?:chunks|synthetic|rejects)/part-\d{5}-\d{6}\.[a-z0-9.]+",
        r"|mix/[^/]+/s\d{3}-[^/]+-\d{6}\.[a-z0-9.]+",
        r"|_wrapflow/(?:state|checkpoints|journal)/.+",
        r"|manifest\.json|report\.html|README\.md)$"
    ))
    .expect("a valid regex")
});

/// True for a path (relative to the output) of the kind wrapflow writes.
pub fn is_ours(rel: &str) -> bool {
    OURS.is_match(rel)
}

/// `_wrapflow/owner.json`: the run an output holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marker {
    pub wrapflow_version: String,
    pub created_at: String,
    pub plan_file: String,
    /// The plan text's hash.
    pub plan_hash: String,
    /// [`Plan::identity`]: the plan text and every parameter but secrets.
    pub identity: String,
    /// Parameter values as shown (secrets masked).
    pub params: BTreeMap<String, String>,
    /// Objects that were in the output before wrapflow took it (`--force`): never removed.
    #[serde(default)]
    pub preexisting: BTreeSet<String>,
    /// The content hash of each file the plan names (tokenizers, models, the embedder): the
    /// run is the same only while they are ([`files::hashes`]).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl Marker {
    fn of(plan: &Plan, preexisting: BTreeSet<String>, files: BTreeMap<String, String>) -> Marker {
        Marker {
            files,
            wrapflow_version: env!("CARGO_PKG_VERSION").into(),
            created_at: now_rfc3339(),
            plan_file: plan.file.clone(),
            plan_hash: plan.hash.clone(),
            identity: plan.identity(),
            params: plan.shown_params(),
            preexisting,
        }
    }

    /// What differs between the run this marker records and `plan`, for people.
    fn differences(&self, plan: &Plan, plan_files: &BTreeMap<String, String>) -> Vec<String> {
        let mut out = Vec::new();
        if self.plan_hash != plan.hash {
            out.push(format!("the plan text differs (was {}, now {})", self.plan_file, plan.file));
        }
        let now = plan.shown_params();
        let names: BTreeSet<&String> = self.params.keys().chain(now.keys()).collect();
        for n in names {
            if plan.secrets.contains(n) {
                continue;
            }
            let (a, b) = (self.params.get(n), now.get(n));
            if a != b {
                let show = |v: Option<&String>| v.map_or("(unset)".to_string(), |v| format!("{v:?}"));
                out.push(format!("parameter `{n}` was {}, now {}", show(a), show(b)));
            }
        }
        out.extend(files::changed(&self.files, plan_files));
        if out.is_empty() {
            out.push("the run identity differs".into());
        }
        out
    }

    /// May wrapflow remove this object?
    pub fn owns(&self, rel: &str) -> bool {
        is_ours(rel) && !self.preexisting.contains(rel)
    }
}

/// How to treat an output that holds something else.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClaimMode {
    /// Write into a non-empty output that wrapflow did not create (what is there stays).
    pub force: bool,
    /// The output holds a run with other settings: remove what it wrote and start again.
    pub restart: bool,
}

/// Refuses outputs that would put other data at risk: `/`, an input's own location (or a folder
/// above it), and a local output with a symbolic link inside it.
pub fn check_location(output: &Location, inputs: &[Location]) -> anyhow::Result<()> {
    let same_store = |i: &Location| {
        let scheme =
            |u: &str| u.split_once("://").map(|(s, rest)| (s.to_string(), rest.split('/').next().map(str::to_string)));
        match (output.local_dir(), i.local_dir()) {
            (Some(_), Some(_)) => true,
            (None, None) => scheme(&output.url) == scheme(&i.url),
            _ => false,
        }
    };
    if let Some(dir) = output.local_dir() {
        let canon = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
        anyhow::ensure!(
            canon.parent().is_some(),
            "refusing to write to {} (the root of the file system): give an output directory",
            output.url
        );
    }
    for i in inputs.iter().filter(|i| same_store(i)) {
        let (o, p) = (output.prefix.as_ref(), i.prefix.as_ref());
        let inside = p == o || o.is_empty() || p.starts_with(&format!("{o}/"));
        anyhow::ensure!(
            !inside,
            "refusing to write to {}: it is (or holds) the input {}; choose an output outside the input",
            output.url,
            i.url
        );
    }
    if let Some(dir) = output.local_dir() {
        check_symlinks(&dir)?;
    }
    Ok(())
}

/// Symbolic links below a local output: wrapflow would write or delete through them.
fn check_symlinks(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let ft = e.file_type().with_context(|| format!("reading {}", e.path().display()))?;
            if ft.is_symlink() {
                bail!(
                    "{} is a symbolic link inside the output: wrapflow does not write or delete through links (remove it, or choose another output)",
                    e.path().display()
                );
            }
            if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

/// Objects under the output, relative to it.
pub(crate) async fn list_all(out: &Location) -> anyhow::Result<Vec<String>> {
    let metas: Vec<_> =
        out.store.list(Some(&out.prefix)).try_collect().await.with_context(|| format!("listing {}", out.url))?;
    let mut rel: Vec<String> = metas.into_iter().map(|m| out.relative(&m.location)).collect();
    rel.sort();
    Ok(rel)
}

async fn read_json<T: serde::de::DeserializeOwned>(out: &Location, rel: &str) -> anyhow::Result<Option<T>> {
    match out.store.get(&out.child(rel)).await {
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}/{rel}: {e}", out.url)),
        Ok(got) => {
            let bytes = got.bytes().await.with_context(|| format!("reading {}/{rel}", out.url))?;
            serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{}/{rel} is not valid JSON", out.url))
        }
    }
}

/// Takes the output for `plan`: checks what is there, takes the lease, writes or checks the
/// marker. The lease is held until the returned [`Claim`] is released.
/// `stop` is set if the lease is lost to another job while this one runs.
pub async fn claim(
    plan: &Plan,
    out: &Location,
    mode: ClaimMode,
    rt: &tokio::runtime::Handle,
    stop: &'static AtomicBool,
) -> anyhow::Result<Claim> {
    let existing: Option<Marker> = read_json(out, MARKER).await?;
    let mut preexisting = BTreeSet::new();
    if existing.is_none() {
        let found = list_all(out).await?;
        // Outputs of wrapflow versions before the marker: their checkpoints say they are ours.
        let legacy = found.iter().any(|p| p.starts_with("_wrapflow/checkpoints/"));
        let foreign: Vec<&String> = found.iter().filter(|p| p.as_str() != LEASE).collect();
        if !legacy && !foreign.is_empty() {
            if !mode.force {
                let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
                bail!(
                    "{} is not empty and was not written by wrapflow ({} objects, e.g. {}): choose a new output location, or pass --force to write beside them (wrapflow never removes what it did not write)",
                    out.url,
                    foreign.len(),
                    shown.join(", ")
                );
            }
            // Those would be overwritten: wrapflow writes these very names.
            if let Some(clash) = foreign.iter().find(|p| is_ours(p)) {
                bail!(
                    "{} holds {clash}, a name wrapflow would write: --force never overwrites; choose a new output location",
                    out.url
                );
            }
            preexisting = foreign.into_iter().cloned().collect();
        }
    }
    let files = files::hashes(plan)?;
    let lease = Lease::acquire(out, rt, stop).await?;
    // Re-read under the lease: another run may have written the marker meanwhile.
    let marker = match read_json::<Marker>(out, MARKER).await? {
        Some(m) if m.identity == plan.identity() && files::changed(&m.files, &files).is_empty() => m,
        Some(m) if mode.restart => {
            let removed = remove_owned(out, &m).await?;
            tracing::warn!(removed, "--restart: removed the earlier run's output");
            let fresh = Marker::of(plan, m.preexisting, files);
            write_marker(out, &fresh).await?;
            fresh
        }
        Some(m) => {
            lease.release().await;
            bail!(
                "{} holds a run with other settings ({}): resume with the same plan, parameters and files, pass --restart to replace that run, or choose a new output location",
                out.url,
                m.differences(plan, &files).join("; ")
            )
        }
        None => {
            let m = Marker::of(plan, preexisting, files);
            write_marker(out, &m).await?;
            m
        }
    };
    Ok(Claim { marker, lease })
}

/// For outputs without a lease (`wrapflow remix`): every object already there must be one that
/// `allowed` says this command writes (and so may overwrite).
pub async fn ensure_only(out: &Location, allowed: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let foreign: Vec<String> = list_all(out).await?.into_iter().filter(|p| !allowed(p)).collect();
    if let Some(first) = foreign.first() {
        bail!(
            "{} holds {} objects this command did not write (e.g. {first}): choose a new output location",
            out.url,
            foreign.len()
        );
    }
    Ok(())
}

async fn write_marker(out: &Location, m: &Marker) -> anyhow::Result<()> {
    let body = PutPayload::from(serde_json::to_vec_pretty(m)?);
    out.store.put(&out.child(MARKER), body).await.with_context(|| format!("writing {}/{MARKER}", out.url))?;
    Ok(())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Removes every object of an earlier run that wrapflow may remove (`--restart`).
async fn remove_owned(out: &Location, m: &Marker) -> anyhow::Result<usize> {
    let doomed: Vec<String> = list_all(out).await?.into_iter().filter(|p| m.owns(p)).collect();
    for p in &doomed {
        out.store.delete(&out.child(p)).await.with_context(|| format!("removing {}/{p}", out.url))?;
    }
    Ok(doomed.len())
}

/// A taken output: its marker and the lease (released by [`Claim::release`]).
pub struct Claim {
    pub marker: Marker,
    pub lease: Lease,
}

/// `_wrapflow/lease.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseDoc {
    pub host: String,
    pub pid: u32,
    /// Tells this process from an earlier one with the same pid.
    pub token: String,
    pub acquired_at: String,
    /// Seconds since the epoch; renewed every third of the lease time.
    pub expires_unix: u64,
}

impl LeaseDoc {
    /// Held by a live process: not expired (a running job renews it), and on this host its
    /// process still exists (so a killed job's lease is free at once, and a reused pid never
    /// holds it past expiry). A holder with this process's own pid on this host is gone: a
    /// restarted container (Kubernetes keeps the pod's hostname, and `exec` makes the job pid 1
    /// again) takes the lease over at once instead of failing until it expires.
    pub fn alive(&self) -> bool {
        let gone_here = self.host == hostname() && (self.pid == std::process::id() || !pid_alive(self.pid));
        self.expires_unix > unix_now() && !gone_here
    }

    pub fn describe(&self) -> String {
        format!("process {} on {} since {}", self.pid, self.host, self.acquired_at)
    }
}

/// Seconds a lease lasts without renewal (`WRAPFLOW_LEASE_S`, default 60).
fn lease_secs() -> u64 {
    std::env::var("WRAPFLOW_LEASE_S").ok().and_then(|v| v.parse().ok()).filter(|s| *s > 0).unwrap_or(60)
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Reads the lease of an output, if any.
pub async fn read_lease(out: &Location) -> anyhow::Result<Option<LeaseDoc>> {
    read_json(out, LEASE).await
}

/// The held lease; a task renews it until [`Lease::release`].
pub struct Lease {
    out: Location,
    doc: LeaseDoc,
    stop: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Lease {
    pub(crate) async fn acquire(
        out: &Location,
        rt: &tokio::runtime::Handle,
        lost: &'static AtomicBool,
    ) -> anyhow::Result<Lease> {
        let secs = lease_secs();
        let doc = LeaseDoc {
            host: hostname(),
            pid: std::process::id(),
            token: blake3::hash(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes())
                .to_hex()
                .to_string(),
            acquired_at: now_rfc3339(),
            expires_unix: unix_now() + secs,
        };
        let body = serde_json::to_vec_pretty(&doc)?;
        let create = PutOptions { mode: PutMode::Create, ..Default::default() };
        match out.store.put_opts(&out.child(LEASE), PutPayload::from(body.clone()), create.clone()).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let held: Option<LeaseDoc> = read_json(out, LEASE).await?;
                match held {
                    Some(h) if h.alive() => bail!(
                        "{} is being written by another wrapflow job ({}; lease expires in {} s): wait for it, or stop it",
                        out.url,
                        h.describe(),
                        h.expires_unix.saturating_sub(unix_now())
                    ),
                    stale => {
                        if let Some(h) = stale {
                            tracing::warn!(holder = %h.describe(), "taking over the lease of a job that is gone");
                        }
                        out.store.delete(&out.child(LEASE)).await.ok();
                        out.store.put_opts(&out.child(LEASE), PutPayload::from(body.clone()), create).await.map_err(
                            |e| anyhow::anyhow!("{} was taken by another job at the same moment: {e}", out.url),
                        )?;
                    }
                }
            }
            Err(e) => return Err(anyhow::anyhow!("taking the lease {}/{LEASE}: {e}", out.url)),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = rt.spawn(renew(out.clone(), doc.clone(), secs, stop.clone(), lost));
        Ok(Lease { out: out.clone(), doc, stop, renewer: Some(renewer) })
    }

    /// Stops renewing and removes the lease if it is still this job's.
    pub async fn release(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Ok(Some(h)) = read_json::<LeaseDoc>(&self.out, LEASE).await
            && h.token == self.doc.token
        {
            self.out.store.delete(&self.out.child(LEASE)).await.ok();
        }
    }
}

/// Pushes the lease's expiry forward every third of its time while it is still this job's.
async fn renew(out: Location, mut doc: LeaseDoc, secs: u64, stop: Arc<AtomicBool>, lost: &'static AtomicBool) {
    let every = Duration::from_secs_f64((secs as f64 / 3.0).max(0.2));
    loop {
        tokio::time::sleep(every).await;
        if stop.load(Ordering::Acquire) {
            return;
        }
        match read_json::<LeaseDoc>(&out, LEASE).await {
            Ok(Some(h)) if h.token == doc.token => {}
            Ok(_) => {
                tracing::error!("the output's lease was taken by another job: stopping at the next checkpoint");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!("cannot read the lease to renew it: {e:#}");
                continue;
            }
        }
        doc.expires_unix = unix_now() + secs;
        let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        if let Err(e) = out.store.put(&out.child(LEASE), PutPayload::from(body)).await {
            tracing::warn!("renewing the lease: {e}");
        }
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
