//! `cargo xtask bench`: what the monitor costs the traffic it watches, how much it catches, and
//! how it compares with other tools. (Being implemented.)

/// `cargo xtask bench` options.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Run each benchmark briefly (used by the test suite so the harness cannot rot).
    #[arg(long)]
    pub quick: bool,
}

/// Runs the benchmarks.
pub fn run(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("benchmarks are not implemented yet")
}
