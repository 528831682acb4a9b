//! The `paycode` binary: the command line (`cli/`) over the library.

use std::process::ExitCode;

mod cli;

fn main() -> anyhow::Result<ExitCode> {
    cli::main()
}
