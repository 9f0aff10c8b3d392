//! ip-location-db ASN CSV (`start,end,asn,org`, inclusive ranges) → MMDB with the GeoLite2-ASN
//! field names, so the monitor reads it like `GeoLite2-ASN`.
//!
//! Every conversion is checked by reading the result back: the first, middle and last address
//! of every row must give that row's ASN and organisation, and the addresses just outside a
//! row must give nothing unless another row covers them.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    io::{BufReader, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};
use maxminddb::{Reader, geoip2};
use serde::Serialize;

use super::{
    cidr::{Block, split, to_u128},
    mmdb::{self, Meta},
    overlap::{Segment, resolve},
};

/// `database_type` of the converted file.
pub const DATABASE_TYPE: &str = "ip-location-db-ASN";

/// One record of the output (GeoLite2-ASN layout; records are shared per (number, name)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
struct AsnRecord {
    autonomous_system_number: u32,
    autonomous_system_organization: String,
}

/// One CSV row.
#[derive(Debug, Clone)]
struct Row {
    start: IpAddr,
    end: IpAddr,
    record: AsnRecord,
}

/// Counts of one conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// IPv4 rows read.
    pub rows_v4: usize,
    /// IPv6 rows read.
    pub rows_v6: usize,
    /// Distinct (ASN, organisation) records.
    pub records: usize,
    /// CIDR blocks inserted.
    pub blocks: usize,
    /// Search tree nodes.
    pub nodes: u32,
    /// Output size in bytes.
    pub bytes: usize,
    /// Groups of overlapping rows (each `start-end ASN` text), resolved by [`resolve`].
    pub overlaps: Vec<Vec<String>>,
}

impl Summary {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} IPv4 + {} IPv6 rows, {} records, {} networks, {} nodes, {} bytes",
            self.rows_v4, self.rows_v6, self.records, self.blocks, self.nodes, self.bytes
        );
        for group in &self.overlaps {
            let _ = write!(line, "; overlapping rows resolved (narrower range wins): {}", group.join(" / "));
        }
        line
    }
}

/// `cargo xtask geo convert`.
pub fn run(ipv4: &Path, ipv6: &Path, out: &Path, build_epoch: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let open = |p: &Path| File::open(p).map(BufReader::new).with_context(|| format!("cannot open {}", p.display()));
    let (bytes, summary) = convert(open(ipv4)?, open(ipv6)?, build_epoch, &description(ipv4, ipv6))?;
    mmdb::write_atomic(out, &bytes)?;
    eprintln!(
        "xtask geo: wrote {} in {:.1} s, read back and checked: {}",
        out.display(),
        started.elapsed().as_secs_f64(),
        summary.line()
    );
    Ok(())
}

/// The `description.en` of a conversion.
pub fn description(ipv4: &Path, ipv6: &Path) -> String {
    let name = |p: &Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!("ip-location-db ASN ({}, {}) converted by cargo xtask geo", name(ipv4), name(ipv6))
}

/// Converts the two CSV inputs to MMDB bytes and checks them by lookups.
pub fn convert(
    ipv4: impl Read,
    ipv6: impl Read,
    build_epoch: u64,
    description: &str,
) -> anyhow::Result<(Vec<u8>, Summary)> {
    let v4 = read_rows(ipv4, false).context("IPv4 CSV")?;
    let v6 = read_rows(ipv6, true).context("IPv6 CSV")?;
    let rows: Vec<&Row> = v4.iter().chain(&v6).collect();
    let mut index: HashMap<&AsnRecord, usize> = HashMap::new();
    let mut records: Vec<&AsnRecord> = Vec::new();
    let mut spans = Vec::with_capacity(rows.len());
    for row in &rows {
        let i = *index.entry(&row.record).or_insert_with(|| {
            records.push(&row.record);
            records.len() - 1
        });
        spans.push(Segment { start: to_u128(row.start), end: to_u128(row.end), record: i });
    }
    let (segments, groups) = resolve(&spans);
    let blocks: Vec<(Block, usize)> =
        segments.iter().flat_map(|s| split(s.start, s.end).into_iter().map(|b| (b, s.record))).collect();
    let block_count = blocks.len();
    let meta = Meta { database_type: DATABASE_TYPE, description, build_epoch };
    let bytes = mmdb::write(&records, blocks, &meta)?;
    let nodes = check(&bytes, &segments, &records)?;
    let overlaps = groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|&i| format!("{}-{} AS{}", rows[i].start, rows[i].end, rows[i].record.autonomous_system_number))
                .collect()
        })
        .collect();
    let summary = Summary {
        rows_v4: v4.len(),
        rows_v6: v6.len(),
        records: records.len(),
        blocks: block_count,
        nodes,
        bytes: bytes.len(),
        overlaps,
    };
    Ok((bytes, summary))
}

/// Parses `start,end,asn,org` rows (no header; `org` may be quoted and contain commas).
fn read_rows(input: impl Read, ipv6: bool) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(input);
    let mut rows = Vec::new();
    for (n, rec) in reader.deserialize::<(String, String, u32, String)>().enumerate() {
        let line = n + 1;
        let (start, end, asn, org) = rec.with_context(|| format!("row {line}"))?;
        let parse = |s: &str| -> anyhow::Result<IpAddr> {
            Ok(if ipv6 { IpAddr::V6(s.parse::<Ipv6Addr>()?) } else { IpAddr::V4(s.parse::<Ipv4Addr>()?) })
        };
        let start = parse(&start).with_context(|| format!("row {line}: bad start address {start:?}"))?;
        let end = parse(&end).with_context(|| format!("row {line}: bad end address {end:?}"))?;
        ensure!(to_u128(start) <= to_u128(end), "row {line}: start {start} is after end {end}");
        if ipv6 && to_u128(start) <= u128::from(u32::MAX) {
            bail!("row {line}: {start} lies in ::/96, where the IPv4 ranges go");
        }
        let record = AsnRecord { autonomous_system_number: asn, autonomous_system_organization: org };
        rows.push(Row { start, end, record });
    }
    Ok(rows)
}

/// Reads `bytes` back: the first, middle and last address of every segment must give its
/// record, and an uncovered address next to a segment must give nothing. Returns the node count.
fn check(bytes: &[u8], segments: &[Segment], records: &[&AsnRecord]) -> anyhow::Result<u32> {
    let reader = Reader::from_source(bytes).context("the written file does not open")?;
    let v4_max = u128::from(u32::MAX);
    for (n, seg) in segments.iter().enumerate() {
        let (s, e) = (seg.start, seg.end);
        let want = records[seg.record];
        let want = (Some(want.autonomous_system_number), Some(want.autonomous_system_organization.as_str()));
        for at in [s, s + (e - s) / 2, e] {
            let ip = address(at);
            let got = reader.lookup(ip)?.decode::<geoip2::Asn<'_>>()?;
            let got = got.map(|a| (a.autonomous_system_number, a.autonomous_system_organization));
            ensure!(got == Some(want), "{ip}: read back {got:?}, expected {want:?}");
        }
        let before = s.checked_sub(1).filter(|&b| n == 0 || segments[n - 1].end < b);
        let after = e.checked_add(1).filter(|&a| segments.get(n + 1).is_none_or(|next| next.start > a));
        for outside in [before, after].into_iter().flatten() {
            // Stay in the segment's family (IPv6 rows never start inside ::/96).
            if (s <= v4_max) == (outside <= v4_max) {
                let ip = address(outside);
                ensure!(!reader.lookup(ip)?.has_data(), "{ip} (outside every range) has data");
            }
        }
    }
    Ok(reader.metadata().node_count)
}

/// A position of the 128-bit space as an address (IPv4 under `::/96`).
fn address(at: u128) -> IpAddr {
    match u32::try_from(at) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "\
1.0.0.1,1.0.0.254,13335,\"Cloudflare, Inc.\"
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
1.0.128.0,1.0.196.255,23969,TOT Public Company Limited
2.26.200.0,2.26.215.255,201907,\"LLC \"\"SPUTNIK\"\"\"
8.0.0.0,8.127.255.255,3356,Level 3
9.0.0.0,9.0.0.255,13335,\"Cloudflare, Inc.\"
128.0.0.0,223.255.255.255,64512,Huge Range Inc.
255.255.255.255,255.255.255.255,0,Top
";
    const V6: &str = "\
2001::,2001::ffff:ffff:ffff:ffff:ffff:ffff,6939,Hurricane Electric LLC
2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project
2001:200:1ba::,2001:200:1ba:ffff:ffff:ffff:ffff:ffff,24047,\"Internet Systems Consortium, Inc.\"
2001:200:1bb::,2001:200:dff:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project
2c0f:fff0::,2c0f:fff0:ffff:ffff:ffff:ffff:ffff:ffff,37125,Layer3 Limited
8000::,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,4294967294,Upper Half
";

    fn lookup(reader: &Reader<Vec<u8>>, ip: &str) -> Option<(u32, String)> {
        let asn = reader.lookup(ip.parse().unwrap()).unwrap().decode::<geoip2::Asn<'_>>().unwrap()?;
        Some((asn.autonomous_system_number?, asn.autonomous_system_organization?.to_owned()))
    }

    fn converted() -> (Reader<Vec<u8>>, Summary) {
        let (bytes, summary) = convert(V4.as_bytes(), V6.as_bytes(), 1_781_722_800, "test").unwrap();
        (Reader::from_source(bytes).unwrap(), summary)
    }

    #[test]
    fn small_csv_converts_with_exact_boundaries() {
        let (r, s) = converted();
        assert_eq!((s.rows_v4, s.rows_v6, s.records), (8, 6, 12), "Cloudflare and WIDE rows share records");
        let cf = Some((13335, "Cloudflare, Inc.".to_owned()));
        for (ip, want) in [
            ("1.0.0.0", None),
            ("1.0.0.1", cf.clone()),
            ("1.0.0.128", cf.clone()),
            ("1.0.0.254", cf.clone()),
            ("1.0.0.255", None),
            ("1.0.3.255", None),
            ("1.0.4.0", Some((38803, "Gtelecom Pty Ltd".to_owned()))),
            ("1.0.7.255", Some((38803, "Gtelecom Pty Ltd".to_owned()))),
            ("1.0.8.0", None),
            ("1.0.196.255", Some((23969, "TOT Public Company Limited".to_owned()))),
            ("1.0.197.0", None),
            ("2.26.207.1", Some((201_907, "LLC \"SPUTNIK\"".to_owned()))),
            ("7.255.255.255", None),
            ("8.64.0.1", Some((3356, "Level 3".to_owned()))),
            ("8.128.0.0", None),
            ("9.0.0.7", cf),
            ("127.255.255.255", None),
            ("128.0.0.0", Some((64512, "Huge Range Inc.".to_owned()))),
            ("200.1.2.3", Some((64512, "Huge Range Inc.".to_owned()))),
            ("223.255.255.255", Some((64512, "Huge Range Inc.".to_owned()))),
            ("224.0.0.0", None),
            ("255.255.255.254", None),
            ("255.255.255.255", Some((0, "Top".to_owned()))),
            ("2001::1", Some((6939, "Hurricane Electric LLC".to_owned()))),
            ("2001:1::", None),
            ("2001:200:1b9:ffff:ffff:ffff:ffff:ffff", Some((2500, "WIDE Project".to_owned()))),
            ("2001:200:1ba::", Some((24047, "Internet Systems Consortium, Inc.".to_owned()))),
            ("2001:200:1bb::", Some((2500, "WIDE Project".to_owned()))),
            ("2001:200:e00::", None),
            ("2c0f:fff0:8000::1", Some((37125, "Layer3 Limited".to_owned()))),
            ("2c0f:fff1::", None),
            ("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("8000::", Some((4_294_967_294, "Upper Half".to_owned()))),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some((4_294_967_294, "Upper Half".to_owned()))),
        ] {
            assert_eq!(lookup(&r, ip), want, "{ip}");
        }
    }

    #[test]
    fn converted_file_has_asn_metadata_and_no_mapped_alias() {
        let (r, _) = converted();
        let m = r.metadata();
        assert_eq!(m.database_type, DATABASE_TYPE);
        assert_eq!((m.ip_version, m.binary_format_major_version, m.build_epoch), (6, 2, 1_781_722_800));
        assert_eq!(lookup(&r, "::ffff:1.0.4.1"), None, "callers canonicalise IPv4-mapped addresses");
        r.verify().unwrap();
    }

    #[test]
    fn conversion_is_deterministic() {
        let a = convert(V4.as_bytes(), V6.as_bytes(), 1, "d").unwrap().0;
        let b = convert(V4.as_bytes(), V6.as_bytes(), 1, "d").unwrap().0;
        assert_eq!(a, b);
    }

    #[test]
    fn overlapping_rows_resolve_to_the_narrower_range() {
        // The one overlap in @ip-location-db/asn 2.3.2026061719, plus a nested and a duplicate pair.
        let v4 = "\
214.95.0.0,215.0.255.255,749,United States Department of Defense (DoD)
215.0.0.0,215.1.3.255,721,DoD Network Information Center
10.0.0.0,10.255.255.255,1,Wide
10.1.0.0,10.1.255.255,2,Nested
20.0.0.0,20.0.0.255,3,First
20.0.0.0,20.0.0.255,4,Second
";
        let (bytes, s) = convert(v4.as_bytes(), "".as_bytes(), 0, "d").unwrap();
        assert_eq!(s.overlaps.len(), 3, "{:?}", s.overlaps);
        assert!(s.line().contains("214.95.0.0-215.0.255.255 AS749 / 215.0.0.0-215.1.3.255 AS721"), "{}", s.line());
        let r = Reader::from_source(bytes).unwrap();
        let dod = "United States Department of Defense (DoD)".to_owned();
        let nic = "DoD Network Information Center".to_owned();
        for (ip, want) in [
            ("214.95.0.0", Some((749, dod.clone()))),
            ("214.255.255.255", Some((749, dod))),
            ("215.0.0.0", Some((721, nic.clone()))),
            ("215.0.255.255", Some((721, nic.clone()))),
            ("215.1.3.255", Some((721, nic))),
            ("215.1.4.0", None),
            ("10.0.255.255", Some((1, "Wide".to_owned()))),
            ("10.1.0.0", Some((2, "Nested".to_owned()))),
            ("10.1.255.255", Some((2, "Nested".to_owned()))),
            ("10.2.0.0", Some((1, "Wide".to_owned()))),
            ("10.255.255.255", Some((1, "Wide".to_owned()))),
            ("20.0.0.9", Some((4, "Second".to_owned()))),
        ] {
            assert_eq!(lookup(&r, ip), want, "{ip}");
        }
    }

    #[test]
    fn bad_rows_are_refused_with_their_line() {
        for (v4, v6, needle) in [
            ("1.0.0.9,1.0.0.1,1,A\n", "", "after end"),
            ("1.0.0.0,1.0.0.1,x,A\n", "", "row 1"),
            ("2001::,2001::1,1,A\n", "", "bad start"),
            ("", "1.0.0.0,1.0.0.1,1,A\n", "bad start"),
            ("", "::1,::2,1,A\n", "::/96"),
        ] {
            let err = convert(v4.as_bytes(), v6.as_bytes(), 0, "d").unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{needle}: {err:#}");
        }
    }
}
