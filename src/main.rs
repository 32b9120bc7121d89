//! The `wrapflow` binary: the command line lives in [`wrapflow::cli`].

/// mimalloc returns freed memory to the system and fragments less than glibc's malloc across
/// wrapflow's reader, runtime and worker threads, so peak memory tracks live data.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wrapflow::cli::main()
}
