//! ONNX Runtime setup: finding the library, one environment per process, sessions on the
//! chosen execution provider.
//!
//! The library is `$ORT_DYLIB_PATH`, else `.cache/onnxruntime/libonnxruntime.so.1.31.1` under the
//! current directory or any ancestor of the executable (where `scripts/install-ort.sh` puts it),
//! else the one a host names ([`set_host_library`]: the Python package, from the `onnxruntime`
//! wheel).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use serde::{Deserialize, Serialize};

const LIB: &str = "libonnxruntime.so.1.31.1";

/// Where sessions run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
}

/// Session settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub provider: Provider,
    /// Threads inside one operator (0: ONNX Runtime's default, one per core).
    pub intra_threads: usize,
    /// ONNX Runtime's CPU memory arena (and memory patterns). On by default: measured with 16
    /// sequences of continuous batching, turning it off raised peak memory from 1.5 to 2.2 GB and
    /// cut throughput by 20% (benchmarks/RESULTS.md).
    pub cpu_arena: bool,
    /// Denormal floats flushed to zero in ONNX Runtime's threads. On by default: prefill ran 14%
    /// faster (5% end to end) with the same greedy tokens on 16 of 16 sequences
    /// (benchmarks/RESULTS.md).
    pub flush_to_zero: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { provider: Provider::Cpu, intra_threads: 0, cpu_arena: true, flush_to_zero: true }
    }
}

static HOST_LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// A library to load when neither `$ORT_DYLIB_PATH` nor `.cache/onnxruntime` has one: the
/// Python package passes the `onnxruntime` wheel's when it is installed. The first call wins.
pub fn set_host_library(path: PathBuf) {
    let _ = HOST_LIBRARY.set(path);
}

/// The library file wrapflow will load.
pub fn library_path() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "ORT_DYLIB_PATH is {} but there is no such file; run scripts/install-ort.sh or fix the variable",
            p.display()
        );
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
        .iter()
        .map(|r| r.join(".cache/onnxruntime").join(LIB))
        .find(|p| p.is_file())
        .or_else(|| HOST_LIBRARY.get().filter(|p| p.is_file()).cloned())
        .with_context(|| {
            format!("ONNX Runtime library not found: run scripts/install-ort.sh (installs onnxruntime==1.31.1 into .cache/onnxruntime) or set ORT_DYLIB_PATH to {LIB}")
        })
}

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading the library on first use.
pub fn environment() -> anyhow::Result<&'static Environment> {
    let env = ENV.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let builder =
            ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        builder.with_name("wrapflow").build().map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// A session for an ONNX file.
pub fn session(model: &Path, cfg: &SessionConfig) -> anyhow::Result<Session> {
    let env = environment()?;
    let mut b = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Per-operator timings for benchmarks: ONNX Runtime writes a JSON trace when the session ends.
    if let Ok(prefix) = std::env::var("WRAPFLOW_ORT_PROFILE") {
        b = b.with_profiling(prefix).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if cfg.flush_to_zero {
        b = b.with_flush_to_zero().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if cfg.intra_threads > 0 {
        b = b.with_intra_threads(cfg.intra_threads).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if cfg.provider == Provider::Cuda {
        b = cuda(b)?;
    } else {
        b = b
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(cfg.cpu_arena).build()])
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_memory_pattern(cfg.cpu_arena)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // wrapflow's own operators (the importer's attention). ONNX Runtime's custom-domain
    // registration races when several threads create sessions at once, hence the lock.
    static REGISTER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
    b = b.with_operators(crate::engine::attention::domain()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    b.commit_from_file(model).with_context(|| format!("loading {}", model.display()))
}

#[cfg(feature = "cuda")]
fn cuda(b: ort::session::builder::SessionBuilder) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    b.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]).map_err(|e| {
        anyhow::anyhow!(
            "CUDA requested but not available: {e} (install the onnxruntime-gpu wheel and CUDA 13 libraries)"
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: ort::session::builder::SessionBuilder) -> anyhow::Result<ort::session::builder::SessionBuilder> {
    bail!("CUDA requested but this wrapflow was built without the `cuda` feature (cargo build --features cuda)")
}
