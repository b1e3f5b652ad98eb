//! `aceuq uq-bench` (in progress).
/// Arguments of `aceuq uq-bench`.
#[derive(clap::Args, Debug)]
pub struct UqBenchArgs {}
pub fn run(_a: &UqBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
