//! Default geolocation data (DB-IP Country Lite + ip-location-db ASN, CC BY 4.0).

/// `cargo xtask geo` options.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `cargo xtask geo`.
pub fn run(_args: &Args) -> anyhow::Result<()> {
    ensure_default()
}

/// Installs the default databases unless present and intact.
pub fn ensure_default() -> anyhow::Result<()> {
    Ok(())
}
