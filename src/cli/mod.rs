//! The command line: one file per command (or group of commands over the same thing), each
//! parsing its arguments and calling the job, plan or report layer. Nothing here is used by
//! those layers.

pub mod cluster;
pub mod explain;
pub mod generate;
pub mod judge;
pub mod model;
pub mod output;
pub mod run;
pub mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wrapflow",
    version,
    about = "Turn raw web corpora into better pretraining data (WRAP), as one streaming dataflow."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct PlanArgs {
    /// Plan file (SQL plus wrapflow statements; see plans/README.md)
    pub plan: String,
    /// Set a plan parameter: `--set input=data/ --set output=out/` (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_kv)]
    pub sets: Vec<(String, String)>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a plan: read, filter, dedup, chunk and write shards plus manifest.json.
    ///
    /// The input is read in segments with a checkpoint after each (in the output's `_wrapflow/`).
    /// Running again on an output that holds a checkpoint resumes from it; SIGINT or SIGTERM
    /// stops the job at its next checkpoint.
    #[command(
        after_help = "Example:\n  wrapflow run plans/chunk.sql --set input=corpus/ --set output=out/chunks --workers 2\n  wrapflow run plans/wrap.sql --set input=s3://crawl/ --set output=s3://data/wrap --follow --poll 60s"
    )]
    Run(run::RunArgs),
    /// Run on several processes: `cluster local N PLAN [run options]` starts N processes on
    /// loopback (for trying cluster mode on one machine).
    #[command(
        after_help = "Example:\n  wrapflow cluster local 2 plans/chunk.sql --set input=corpus/ --set output=out/c --workers 1"
    )]
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
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
        command: model::ModelCommand,
    },
    /// Generate text with a model directory, for trying a model by hand (tok/s reported).
    #[command(
        after_help = "Example:\n  wrapflow generate --model models/smollm2-135m-instruct --prompt 'Rewrite: ...' --chat --max-new 64"
    )]
    Generate(generate::GenerateArgs),
    /// Serve a model directory over an OpenAI-compatible HTTP API (chat and completions,
    /// streaming), every client's requests sharing one continuous batch. Stops on SIGTERM after
    /// finishing the requests in flight.
    #[command(
        after_help = "Example:\n  wrapflow serve --model models/smollm2-135m-instruct --port 8000 --batch 32\n  \
        then in a plan: REPHRASE WITH (endpoint = 'http://host:8000/v1', model = 'smollm2-135m-instruct')"
    )]
    Serve(serve::ServeArgs),
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
    /// Judge existing (source, rewrite) pairs with a plan's gates: one JSON verdict per line.
    #[command(
        after_help = "Example:\n  wrapflow judge plans/wrap.sql --pairs benchmarks/yardstick/pairs.jsonl > verdicts.jsonl\n\
        Each input line: {\"source\": ..., \"rewrite\": ..., \"style\": \"easy\", \"pair\": \"any id\"}"
    )]
    Judge {
        #[command(flatten)]
        plan: PlanArgs,
        /// JSON lines with `source`, `rewrite`, `style`
        #[arg(long)]
        pairs: String,
        /// Also read each claim with a language model (an imported model directory), with and
        /// without its source: the `lm` scores of each verdict (measured, not yet a gate)
        #[arg(long)]
        lm: Option<String>,
    },
    /// Print a plan's stages and the DataFusion logical plan of its input.
    #[command(after_help = "Example:\n  wrapflow explain plans/chunk.sql --set input=corpus/ --set output=out/")]
    Explain {
        #[command(flatten)]
        plan: PlanArgs,
    },
}

/// Writes `text` to stdout; when its reader has gone away (`| head`) the rest is dropped quietly.
pub(crate) fn out(text: impl AsRef<str>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_ref().as_bytes()).and_then(|()| stdout.flush());
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

/// Parses the command line, sets up logging, runs the command and says how it ended.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that touch no socket end quietly when the reader of stdout goes away (`| head`),
    // as other Unix tools do. The others keep SIGPIPE ignored (Rust's default): a client or a
    // store that closes its connection must never kill a server or a job; they print with [`out`].
    let local = matches!(
        &cli.command,
        Command::Explain { .. } | Command::Check { .. } | Command::Model { .. } | Command::Judge { .. }
    );
    if local || matches!(&cli.command, Command::Generate(_)) {
        // SAFETY: no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // `-q` keeps warnings and errors only; WRAPFLOW_LOG overrides either default.
    let level = if matches!(&cli.command, Command::Run(r) if r.quiet) { "warn" } else { "info" };
    // Colour only for a person at a terminal who has not asked for none (no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WRAPFLOW_LOG").unwrap_or_else(|_| level.into()))
        .with_ansi(colour)
        .with_writer(|| crate::plan::secrets::Redacting(std::io::stderr()))
        .init();
    crate::plan::secrets::redact_panics();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Cluster { command } => cluster::run(command).map(|()| false),
        Command::Status { output } => output::status(&output).map(|()| false),
        Command::Remix { from, mixes, out } => output::remix(&from, &mixes, &out).map(|()| false),
        Command::Check { plan } => explain::check(&plan).map(|()| false),
        Command::Generate(args) => generate::run(args).map(|()| false),
        Command::Serve(args) => serve::run(args).map(|()| false),
        Command::Model { command } => model::run(command).map(|()| false),
        Command::Report { output, json } => output::report(&output, json).map(|()| false),
        Command::Explain { plan } => explain::explain(&plan).map(|()| false),
        Command::Judge { plan, pairs, lm } => judge::run(&plan, &pairs, lm.as_deref()).map(|()| false),
    };
    match result {
        // Stopped by a signal: not an error, but not done either (130, as shells report SIGINT).
        Ok(true) => ExitCode::from(130),
        Ok(false) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::plan::secrets::redact(&message(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each said once, as the CLI and the Python package say it: libraries
/// such as object_store put their cause in their own message too, which `{e:#}` then repeats (and
/// so do worker errors, which reach here as text): a trailing `: cause` already said before it is
/// dropped (a cause of a few letters stays: it may only look like a word said before).
pub fn message(e: &anyhow::Error) -> String {
    let mut out = format!("{e:#}");
    while let Some((head, tail)) = out.rsplit_once(": ")
        && tail.len() >= 12
        && head.contains(tail)
    {
        out.truncate(head.len());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::other("No space left on device");
        let e = anyhow::Error::new(io).context("Unable to copy data: No space left on device").context("writing x");
        assert_eq!(super::message(&e), "writing x: Unable to copy data: No space left on device");
        let e = anyhow::anyhow!("disk gone").context("writing y");
        assert_eq!(super::message(&e), "writing y: disk gone");
        let text = "worker 0: writing z: Generic: Unable to copy: disk full (28): Unable to copy: disk full (28): disk full (28)";
        assert_eq!(
            super::message(&anyhow::anyhow!("{text}")),
            "worker 0: writing z: Generic: Unable to copy: disk full (28)"
        );
        // A short cause is kept even if its word came before.
        assert_eq!(super::message(&anyhow::anyhow!("timeout reading x: timeout")), "timeout reading x: timeout");
    }
}
