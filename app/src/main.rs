//! The `paycode` binary: the command line (`cli/`) over the library.

use std::process::ExitCode;

mod cli;

/// mimalloc instead of the system's allocator: the service allocates and
/// frees many small values per payment on many threads, where glibc's
/// per-thread arenas hold on to freed memory (ADR 0007).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    cli::main()
}
