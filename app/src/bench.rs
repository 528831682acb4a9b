//! `paycode bench NAME`: benchmarks that print figures.

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark: `append`.
    pub name: String,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("unknown benchmark {:?}", args.name)
}
