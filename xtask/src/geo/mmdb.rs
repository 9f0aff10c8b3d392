//! Writing MMDB files with `maxminddb-writer` 0.1.3, around its pitfalls (geodata notes §4):
//! blocks are computed by [`super::cidr`], inserted only when disjoint (the writer lets a later
//! broader prefix overwrite a sub-tree), and the metadata gets `binary_format_major_version = 2`
//! (the writer's default 0 is rejected by libmaxminddb and the Python reader).

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use maxminddb_writer::{Database, metadata::IpVersion};
use serde::Serialize;

use super::cidr::Block;

/// Metadata of a written file.
pub struct Meta<'a> {
    /// `database_type`.
    pub database_type: &'a str,
    /// `description.en`.
    pub description: &'a str,
    /// `build_epoch`: the date of the data.
    pub build_epoch: u64,
}

/// Writes an IPv6 tree (IPv4 under `::/96`) mapping each block to `records[index]`.
/// Fails when two blocks overlap.
pub fn write<R: Serialize>(records: &[R], mut blocks: Vec<(Block, usize)>, meta: &Meta<'_>) -> anyhow::Result<Vec<u8>> {
    blocks.sort_unstable();
    for pair in blocks.windows(2) {
        let [(a, _), (b, _)] = pair else { unreachable!("windows(2)") };
        if b.start <= a.end() {
            bail!("overlapping networks {a:?} and {b:?}: the input ranges must be disjoint");
        }
    }
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    meta.database_type.clone_into(&mut db.metadata.database_type);
    db.metadata.binary_format_major_version = 2;
    db.metadata.binary_format_minor_version = 0;
    db.metadata.build_epoch = meta.build_epoch;
    db.metadata.description = [("en".to_owned(), meta.description.to_owned())].into();
    let refs = records.iter().map(|r| db.insert_value(r)).collect::<Result<Vec<_>, _>>().context("encoding records")?;
    for (block, index) in blocks {
        let data = *refs.get(index).context("record index out of range")?;
        db.insert_node(block.bits(), data);
    }
    let mut out = Vec::new();
    db.write_to(&mut out).context("serialising the MMDB file")?;
    Ok(out)
}

/// Records as maps of strings (the shape of ip-location-db country records).
pub type StringRecord = BTreeMap<String, String>;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced, then
/// renamed over `path` (readers see the old or the new file, never a partial one).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use maxminddb::Reader;

    use super::*;
    use crate::geo::cidr::{split, to_u128};

    fn ip(s: &str) -> u128 {
        to_u128(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn written_file_has_the_metadata_readers_need() {
        let rec: StringRecord = [("country_code".to_owned(), "AU".to_owned())].into();
        let blocks = split(ip("1.0.0.0"), ip("1.0.0.255")).into_iter().map(|b| (b, 0)).collect();
        let meta = Meta { database_type: "test", description: "d", build_epoch: 42 };
        let bytes = write(&[rec], blocks, &meta).unwrap();
        let reader = Reader::from_source(bytes).unwrap();
        let m = reader.metadata();
        assert_eq!((m.binary_format_major_version, m.ip_version, m.record_size), (2, 6, 24));
        assert_eq!((m.database_type.as_str(), m.build_epoch), ("test", 42));
        assert_eq!(m.description.get("en").map(String::as_str), Some("d"));
        reader.verify().unwrap();
        let hit = reader.lookup("1.0.0.9".parse().unwrap()).unwrap();
        assert_eq!(hit.decode::<StringRecord>().unwrap().unwrap()["country_code"], "AU");
        assert_eq!(hit.network().unwrap().to_string(), "1.0.0.0/24");
        assert!(!reader.lookup("1.0.1.0".parse().unwrap()).unwrap().has_data());
        assert!(!reader.lookup("::ffff:1.0.0.9".parse().unwrap()).unwrap().has_data(), "no mapped alias");
    }

    #[test]
    fn overlapping_blocks_are_refused() {
        let mut blocks: Vec<(Block, usize)> =
            split(ip("1.0.0.0"), ip("1.0.0.255")).into_iter().map(|b| (b, 0)).collect();
        blocks.extend(split(ip("1.0.0.128"), ip("1.0.1.0")).into_iter().map(|b| (b, 0)));
        let meta = Meta { database_type: "t", description: "d", build_epoch: 0 };
        let err = write(&[StringRecord::new()], blocks, &meta).unwrap_err();
        assert!(err.to_string().contains("overlapping"), "{err}");
    }
}
