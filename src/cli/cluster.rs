//! `wrapflow cluster local N PLAN`: the same plan on N processes on loopback.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start N processes of `wrapflow run` on loopback and wait for them
    Local {
        /// Number of processes
        n: usize,
        /// The plan and `run` options (--set, --workers, -q)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Local { n, args } => crate::job::cluster::local(n, &args),
    }
}
