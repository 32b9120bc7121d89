//! Running one plan on many processes with timely dataflow's own cluster mode: every process
//! gets the same plan, hostfile and worker count, and `--process I`. Timely connects the
//! processes over TCP; its workers are numbered globally (`process × workers + thread`), and
//! every wrapflow stage already partitions by global worker index (input files and Parquet row
//! groups), sends keys to their owner worker (exact and near-duplicate dedup), or routes to
//! worker 0 (the mixing sink, so its ratios and curriculum hold over the whole cluster's output),
//! so the dataflow is the same on 1 or N processes. What timely leaves to us: a clear error when peers cannot be reached at start, a
//! clean stop naming the peer when one dies mid-run, and `wrapflow cluster local`.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// This process's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Index of this process, 0-based: process 0 writes the manifest.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub hosts: Vec<String>,
    /// How long to wait for every peer at start.
    pub connect_timeout: Duration,
}

impl ClusterSpec {
    /// Reads a hostfile (one `host:port` per line; blank lines and `#` comments skipped) and
    /// checks it against `--processes` and `--process`.
    pub fn from_hostfile(path: &Path, processes: usize, process: usize, timeout: Duration) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading hostfile {}", path.display()))?;
        let hosts: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = hosts.iter().find(|h| h.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err())) {
            bail!("hostfile {}: `{bad}` is not host:port", path.display());
        }
        if hosts.len() != processes {
            bail!("hostfile {} lists {} processes, --processes says {processes}", path.display(), hosts.len());
        }
        if process >= processes {
            bail!("--process {process} is out of range for {processes} processes (0-based)");
        }
        Ok(ClusterSpec { process, hosts, connect_timeout: timeout })
    }
}

/// Timely's configuration for `workers` threads in this process, alone or in a cluster.
pub fn timely_config(workers: usize, cluster: Option<&ClusterSpec>) -> timely::Config {
    match cluster {
        None => timely::Config::process(workers),
        Some(c) => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: workers,
                process: c.process,
                addresses: c.hosts.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
    }
}

/// Ends the process with a message if timely has not connected to every peer in time (timely
/// itself retries forever). Returns the flag to set once connected.
pub fn connect_watchdog(c: &ClusterSpec) -> Arc<AtomicBool> {
    let connected = Arc::new(AtomicBool::new(false));
    let (flag, spec) = (connected.clone(), c.clone());
    std::thread::spawn(move || {
        let t0 = Instant::now();
        while t0.elapsed() < spec.connect_timeout {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let peers: Vec<String> = spec
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != spec.process)
            .map(|(i, h)| format!("{i}={h}"))
            .collect();
        eprintln!(
            "error: process {} ({}) could not connect to its peers within {:?}; tried {}. Is every process \
             started with the same hostfile, and are the ports open?",
            spec.process,
            spec.hosts[spec.process],
            spec.connect_timeout,
            peers.join(", ")
        );
        std::process::exit(2);
    });
    connected
}

/// Turns timely's panic on a lost peer connection into a clean stop naming the peer: timely's
/// network threads are named `timely:recv-P` / `timely:send-P` after the remote process P.
pub fn stop_on_lost_peer(c: &ClusterSpec) {
    let (hosts, me) = (c.hosts.clone(), c.process);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or("").to_string();
        let peer = name.strip_prefix("timely:recv-").or_else(|| name.strip_prefix("timely:send-"));
        if let Some(p) = peer.and_then(|p| p.parse::<usize>().ok()) {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!(
                "error: process {me} lost its connection to process {p} ({}): {msg}. Stopping; \
                 the other processes stop too.",
                hosts.get(p).map_or("?", String::as_str)
            );
            std::process::exit(3);
        }
        default(info);
    }));
}

/// Free loopback ports for `n` processes (bound, read, released).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

/// `wrapflow cluster local N ...`: starts N processes of this binary on loopback with a fresh
/// hostfile, each running `run ARGS --processes N --process I --hostfile F`, and waits for all.
/// If one fails, the others are stopped and the error names it.
pub fn local(n: usize, run_args: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(n >= 1, "a cluster needs at least one process");
    let dir = tempfile::TempDir::new()?;
    let hostfile = dir.path().join("hosts");
    let mut f = std::fs::File::create(&hostfile)?;
    for p in free_ports(n)? {
        writeln!(f, "127.0.0.1:{p}")?;
    }
    drop(f);
    let exe = std::env::current_exe()?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.arg("run").args(run_args).args(["--processes", &n.to_string(), "--process", &i.to_string()]);
        cmd.arg("--hostfile").arg(&hostfile);
        if i > 0 {
            // Process 0 prints the report; the others only log.
            cmd.stdout(std::process::Stdio::null());
        }
        children.push((i, cmd.spawn().with_context(|| format!("starting process {i}"))?));
    }
    let mut failed: Option<(usize, std::process::ExitStatus)> = None;
    while !children.is_empty() {
        let mut i = 0;
        while i < children.len() {
            if let Some(status) = children[i].1.try_wait()? {
                let (p, _) = children.remove(i);
                if !status.success() && failed.is_none() {
                    failed = Some((p, status));
                    for (_, c) in children.iter_mut() {
                        let _ = c.kill();
                    }
                }
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed {
        Some((p, s)) => bail!("process {p} of {n} failed ({s}); the others were stopped"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostfiles_are_checked() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("hosts");
        std::fs::write(&p, "# two processes\n10.0.0.1:2101\n\n10.0.0.2:2101  # second\n").unwrap();
        let c = ClusterSpec::from_hostfile(&p, 2, 1, Duration::from_secs(5)).unwrap();
        assert_eq!(c.hosts, ["10.0.0.1:2101", "10.0.0.2:2101"]);
        assert!(ClusterSpec::from_hostfile(&p, 3, 0, Duration::ZERO).unwrap_err().to_string().contains("lists 2"));
        assert!(ClusterSpec::from_hostfile(&p, 2, 2, Duration::ZERO).unwrap_err().to_string().contains("out of range"));
        std::fs::write(&p, "10.0.0.1\n").unwrap();
        assert!(ClusterSpec::from_hostfile(&p, 1, 0, Duration::ZERO).unwrap_err().to_string().contains("host:port"));
    }
}
