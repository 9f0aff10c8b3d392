//! `cargo xtask geo subset`: copies the networks holding a few addresses, with their records,
//! into a tiny MMDB file. Used for the `country_code`-schema test fixture (real DB-IP answers,
//! no hand-made data).

use std::{net::IpAddr, path::Path};

use anyhow::Context as _;
use maxminddb::Reader;

use super::{
    cidr::{Block, to_u128},
    mmdb::{self, Meta, StringRecord},
};

/// Writes the networks of `ips` in `from` to `out`, keeping `database_type` and `build_epoch`.
pub fn run(from: &Path, out: &Path, ips: &[IpAddr]) -> anyhow::Result<()> {
    let reader = Reader::open_readfile(from).with_context(|| format!("cannot open {}", from.display()))?;
    let mut blocks: Vec<(Block, usize)> = Vec::new();
    let mut records: Vec<StringRecord> = Vec::new();
    for &ip in ips {
        let found = reader.lookup(ip)?;
        let net = found.network()?;
        let record: StringRecord =
            found.decode()?.with_context(|| format!("{ip} has no data in {}", from.display()))?;
        let len = match net.ip() {
            IpAddr::V4(_) => net.prefix() + 96,
            IpAddr::V6(_) => net.prefix(),
        };
        let block = Block { start: to_u128(net.ip()), len };
        if !blocks.iter().any(|(b, _)| *b == block) {
            eprintln!("xtask geo: {ip}: {net} {record:?}");
            blocks.push((block, records.len()));
            records.push(record);
        }
    }
    let meta = reader.metadata();
    let name = from.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let description = format!("{} networks of {name} (build_epoch {}), for tests", records.len(), meta.build_epoch);
    let bytes = mmdb::write(
        &records,
        blocks,
        &Meta { database_type: &meta.database_type, description: &description, build_epoch: meta.build_epoch },
    )?;
    mmdb::write_atomic(out, &bytes)?;
    eprintln!("xtask geo: wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}
