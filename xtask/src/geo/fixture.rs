//! `cargo xtask geo fixture`: writes a tiny country database (ip-location-db `country_code`
//! schema) from `NETWORK=CC` pairs, for tests that need known answers (consensus of two databases
//! that agree on some ranges and disagree on others).

use std::{net::IpAddr, path::Path};

use anyhow::{Context as _, bail};

use super::{
    cidr::{Block, to_u128},
    mmdb::{self, Meta, StringRecord},
};

/// Writes `entries` (`a.b.c.d/len=CC` or `v6::/len=CC`) to `out`.
pub fn run(out: &Path, database_type: &str, build_epoch: u64, entries: &[String]) -> anyhow::Result<()> {
    let mut blocks = Vec::new();
    let mut records: Vec<StringRecord> = Vec::new();
    for entry in entries {
        let (net, country) = entry.split_once('=').with_context(|| format!("`{entry}` is not NETWORK=CC"))?;
        let (ip, len) = net.split_once('/').with_context(|| format!("`{net}` has no prefix length"))?;
        let ip: IpAddr = ip.parse().with_context(|| format!("`{ip}` is not an address"))?;
        let len: u8 = len.parse().with_context(|| format!("`{len}` is not a prefix length"))?;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            bail!("`{country}` is not an ISO 3166-1 alpha-2 code");
        }
        let (start, len) = match ip {
            IpAddr::V4(_) if len <= 32 => (to_u128(ip), len + 96),
            IpAddr::V6(_) if len <= 128 => (to_u128(ip), len),
            _ => bail!("prefix length {len} too long for {ip}"),
        };
        let index = records.iter().position(|r| r.get("country_code").map(String::as_str) == Some(country));
        let index = index.unwrap_or_else(|| {
            records.push([("country_code".to_owned(), country.to_owned())].into());
            records.len() - 1
        });
        blocks.push((Block { start, len }, index));
    }
    let description = format!("{} networks written by `cargo xtask geo fixture`, for tests", blocks.len());
    let bytes = mmdb::write(&records, blocks, &Meta { database_type, description: &description, build_epoch })?;
    mmdb::write_atomic(out, &bytes)?;
    eprintln!("xtask geo: wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}
