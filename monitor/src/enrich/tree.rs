//! Search-tree walks of several MMDB files at once, for the record caches of [`super::db`].
//!
//! An uncached lookup walks one binary tree per database (country, ASN, registry country): up
//! to 32 (IPv4) or 128 (IPv6) dependent reads each, most of them cache misses in megabytes of
//! trees. `maxminddb` walks one tree per call, so the misses of the three walks come one after
//! the other. [`walk_together`] takes one step in every tree per address bit instead: the
//! reads of different trees do not depend on each other, so the processor has their misses in
//! flight at the same time.
//!
//! The walk only finds which record an address points to (its data-section offset, the key of
//! the record caches). A record not cached yet is still found and decoded by
//! `maxminddb::Reader::lookup`, so errors and decoding stay the library's. The walk mirrors
//! the library's (`maxminddb` 0.32, `reader.rs`: `find_address_in_tree_*`,
//! `normalize_lookup_result`, `resolve_data_pointer`, `find_ipv4_start`); the tests compare
//! the two on every network of test databases. A read outside the tree (impossible in a file
//! the library accepted) answers [`Walk::Unknown`]: the caller then asks the library.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use maxminddb::Metadata;
use memmap2::Mmap;

/// Size of the separator between the search tree and the data section (MMDB spec).
const DATA_SECTION_SEPARATOR: usize = 16;

/// Address bits skipped by a [`Tree`]'s jump tables: the first steps of every walk go through
/// the same tens of thousands of nodes, spread over the whole tree (most of a walk's cache
/// misses: the nodes further down lie close together), so the node reached after them is
/// remembered by those bits (2^16 entries of 4 bytes per family: 512 KiB per database). Entries
/// are filled by the first walk that needs them, not at open: filling them all would read most
/// pages of the trees (~12 MiB more resident for the default files, also when few addresses are
/// looked up); the tables are allocated zeroed, so only their pages holding filled entries take
/// memory. An entry is filled from a coarser table of [`COARSE_BITS`] (filled the same way), so
/// a new entry costs 2 steps, not 16. (18 bits would save another third of a warm walk, but cost
/// up to 6 MiB resident on a host talking to much of the address space: the memory goal.)
const JUMP_BITS: u32 = 16;

/// Address bits of the coarser jump tables that fill the [`JUMP_BITS`] ones (2^14 entries of 4
/// bytes per family: 128 KiB per database).
const COARSE_BITS: u32 = 14;

/// Databases walked together by one [`walk_together`] call (the default three, plus one
/// configured extra country database; further ones are looked up by the library alone).
pub const LANES: usize = 4;

/// A mapped database file, shared by the `maxminddb` reader and the [`Tree`] walker (one
/// mapping, counted once in the resident memory).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mmap>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where an address leads in one tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Walk {
    /// No record: the library answers "not found" for this address.
    NotFound,
    /// The record at this data-section offset (what `LookupResult::offset` returns for it).
    /// Not checked against the data section's end: only offsets that the library returned
    /// are ever cached, so an offset past the end is never found in a cache and goes to the
    /// library, which reports it.
    Record(usize),
    /// Not walked (no tree, more databases than [`LANES`], or a read outside the tree): ask
    /// the library.
    Unknown,
}

/// Bytes per node and layout of one record pair (MMDB spec: 24, 28 or 32-bit records).
#[derive(Debug, Clone, Copy)]
enum RecordSize {
    Bits24,
    Bits28,
    Bits32,
}

/// The search tree of one database file.
#[derive(Debug)]
pub struct Tree {
    /// The whole file.
    bytes: Shared,
    /// Nodes in the tree; a child value above it points into the data section.
    node_count: usize,
    /// Record layout.
    record: RecordSize,
    /// Node where IPv4 addresses start (after 96 zero bits), as the library computes it.
    ipv4_start: usize,
    /// Node reached after the first [`JUMP_BITS`] bits of an IPv4 address, by those bits
    /// (walked from `ipv4_start`); 0 (the root, which no walk reaches again): not known yet.
    /// Atomic only to keep the tree `Sync`; relaxed loads and stores are plain moves.
    jump_v4: Box<[AtomicU32]>,
    /// The same for IPv6 addresses (walked from the root).
    jump_v6: Box<[AtomicU32]>,
    /// Node reached after the first [`COARSE_BITS`] bits of an IPv4 address, same rules.
    coarse_v4: Box<[AtomicU32]>,
    /// The same for IPv6 addresses.
    coarse_v6: Box<[AtomicU32]>,
}

impl Tree {
    /// The tree of `bytes` described by `meta`; `None` for a layout this walker does not
    /// handle (the library alone is used then).
    pub fn new(bytes: Shared, meta: &Metadata) -> Option<Self> {
        let record = match meta.record_size {
            24 => RecordSize::Bits24,
            28 => RecordSize::Bits28,
            32 => RecordSize::Bits32,
            _ => return None,
        };
        if meta.ip_version != 6 {
            return None;
        }
        let node_count = usize::try_from(meta.node_count).ok()?;
        let mut tree = Self {
            bytes,
            node_count,
            record,
            ipv4_start: 0,
            jump_v4: zeroed_table(JUMP_BITS),
            jump_v6: zeroed_table(JUMP_BITS),
            coarse_v4: zeroed_table(COARSE_BITS),
            coarse_v6: zeroed_table(COARSE_BITS),
        };
        tree.ipv4_start = tree.descend(0, 0, 96)?;
        Some(tree)
    }

    /// The node reached from `node` by the `bits` high bits of `key` (fewer when a record
    /// leaves the tree before: the walk stops there, as the library's does).
    fn descend(&self, mut node: usize, key: u128, bits: u32) -> Option<usize> {
        for i in 0..bits {
            if node >= self.node_count {
                break;
            }
            node = self.child(node, ((key >> (127 - i)) & 1) as usize)?;
        }
        Some(node)
    }

    /// The node reached by the first [`JUMP_BITS`] bits of `key` from the start node of its
    /// family: remembered in the jump table, else walked on from the coarse table's node and
    /// remembered. `None` when a node could not be read.
    #[inline]
    fn jump(&self, key: u128, v4: bool) -> Option<usize> {
        let table = if v4 { &self.jump_v4 } else { &self.jump_v6 };
        remembered(table, key, JUMP_BITS, || {
            self.descend(self.coarse(key, v4)?, key << COARSE_BITS, JUMP_BITS - COARSE_BITS)
        })
    }

    /// The node reached by the first [`COARSE_BITS`] bits of `key`, like [`Self::jump`].
    fn coarse(&self, key: u128, v4: bool) -> Option<usize> {
        let (table, start) = if v4 { (&self.coarse_v4, self.ipv4_start) } else { (&self.coarse_v6, 0) };
        remembered(table, key, COARSE_BITS, || self.descend(start, key, COARSE_BITS))
    }

    /// Child `bit` (0 left, 1 right) of `node`; `None` when outside the file.
    #[inline(always)]
    fn child(&self, node: usize, bit: usize) -> Option<usize> {
        let buf: &[u8] = self.bytes.as_ref();
        let offset = match self.record {
            RecordSize::Bits24 => node * 6 + bit * 2,
            RecordSize::Bits28 => node * 7 + bit * 3,
            RecordSize::Bits32 => node * 8 + bit * 4,
        };
        let word = u32::from_be_bytes(*buf.get(offset..offset + 4)?.first_chunk::<4>()?);
        Some(match self.record {
            RecordSize::Bits24 => ((word >> ((1 - bit) * 8)) & 0x00FF_FFFF) as usize,
            RecordSize::Bits28 if bit == 0 => ((word >> 8) | ((word << 20) & 0x0F00_0000)) as usize,
            RecordSize::Bits28 => (word & 0x0FFF_FFFF) as usize,
            RecordSize::Bits32 => word as usize,
        })
    }

    /// What the library makes of the final node of a walk.
    fn finish(&self, node: usize) -> Walk {
        if node <= self.node_count {
            return Walk::NotFound;
        }
        (node - self.node_count).checked_sub(DATA_SECTION_SEPARATOR).map_or(Walk::Unknown, Walk::Record)
    }
}

/// A jump table of `bits` address bits, every entry unknown (0), allocated zeroed (`calloc`): the
/// allocator takes a block this large from fresh zero pages instead of writing zeros, so a page
/// of the table takes memory only once an entry in it is filled.
fn zeroed_table(bits: u32) -> Box<[AtomicU32]> {
    let table: Box<[u32]> = vec![0_u32; 1 << bits].into_boxed_slice();
    // SAFETY: `AtomicU32` has the same size, alignment and bit validity as `u32` (its documented
    // in-memory representation), so the slice is reinterpreted in place, length unchanged.
    unsafe { Box::from_raw(Box::into_raw(table) as *mut [AtomicU32]) }
}

/// The node `table` (of `bits` address bits) remembers for `key`, else `walk`'s, remembered
/// when it fits (0, the root, which no walk reaches again, marks an unknown entry). Relaxed
/// loads and stores are plain moves; the atomics only keep the tree `Sync`.
#[inline(always)]
fn remembered(table: &[AtomicU32], key: u128, bits: u32, walk: impl FnOnce() -> Option<usize>) -> Option<usize> {
    let slot = table.get((key >> (128 - bits)) as usize)?;
    let known = slot.load(Ordering::Relaxed);
    if known != 0 {
        return Some(known as usize);
    }
    let node = walk()?;
    if let Ok(node) = u32::try_from(node) {
        slot.store(node, Ordering::Relaxed);
    }
    Some(node)
}

/// Walks `ip` down every tree of `trees` in lockstep, one address bit at a time.
pub fn walk_together(trees: [Option<&Tree>; LANES], ip: IpAddr) -> [Walk; LANES] {
    let (key, bits, v4) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32_u32, true),
        IpAddr::V6(a) => (u128::from(a), 128, false),
    };
    let mut nodes = [0usize; LANES];
    let mut walks = [Walk::Unknown; LANES];
    let mut live = [false; LANES];
    for (lane, tree) in trees.iter().enumerate() {
        if let Some(node) = tree.and_then(|tree| tree.jump(key, v4)) {
            nodes[lane] = node;
            live[lane] = true;
        }
    }
    for i in JUMP_BITS..bits {
        let bit = ((key >> (127 - i)) & 1) as usize;
        let mut any = false;
        for lane in 0..LANES {
            if !live[lane] {
                continue;
            }
            let Some(tree) = trees[lane] else { continue };
            if nodes[lane] >= tree.node_count {
                continue;
            }
            if let Some(next) = tree.child(nodes[lane], bit) {
                nodes[lane] = next;
                any = true;
            } else {
                live[lane] = false;
            }
        }
        if !any {
            break;
        }
    }
    for lane in 0..LANES {
        if let (true, Some(tree)) = (live[lane], trees[lane]) {
            walks[lane] = tree.finish(nodes[lane]);
        }
    }
    walks
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
        path::Path,
    };

    use maxminddb::{Reader, WithinOptions};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geo");

    /// A file as bytes the reader and the tree share (a heap copy stands in for the mapping).
    fn shared(bytes: Vec<u8>) -> Shared {
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).expect("anonymous map");
        map.copy_from_slice(&bytes);
        Shared(Arc::new(map.make_read_only().expect("read-only")))
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture")
    }

    /// The same database with 32-bit records (no fixture has them): the tree re-encoded, data
    /// section and metadata unchanged but the record size, so every pointer keeps its value.
    fn with_32_bit_records(bytes: &[u8]) -> Vec<u8> {
        let reader = Reader::from_source(bytes).expect("fixture opens");
        let meta = reader.metadata();
        assert_eq!(meta.record_size, 24, "source must have 24-bit records");
        let nodes = usize::try_from(meta.node_count).expect("node count");
        let tree = Tree::new(shared(bytes.to_vec()), meta).expect("24-bit tree");
        let mut out = Vec::new();
        for node in 0..nodes {
            for bit in 0..2 {
                let child = u32::try_from(tree.child(node, bit).expect("inside")).expect("fits");
                out.extend_from_slice(&child.to_be_bytes());
            }
        }
        let rest = &bytes[nodes * 6..];
        let marker = b"\xab\xcd\xefMaxMind.com";
        let meta_at = rest.windows(marker.len()).rposition(|w| w == marker).expect("metadata");
        let key = b"record_size\xa1\x18"; // key, then uint16 of one byte: 24
        let at = meta_at + rest[meta_at..].windows(key.len()).position(|w| w == key).expect("record_size");
        out.extend_from_slice(rest);
        let base = nodes * 8;
        out[base + at + key.len() - 1] = 32;
        out
    }

    /// Every network's first and last address, and pseudo-random ones of both families.
    fn probes(reader: &Reader<Shared>) -> Vec<IpAddr> {
        let mut ips = Vec::new();
        for item in reader.networks(WithinOptions::default()).expect("networks") {
            let network = item.expect("network").network().expect("network");
            ips.push(network.network());
            ips.push(network.broadcast());
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ips.push(IpAddr::V4(Ipv4Addr::from((state >> 32) as u32)));
            ips.push(IpAddr::V6(Ipv6Addr::from(u128::from(state) << 64 | u128::from(state.rotate_left(29)))));
        }
        ips
    }

    /// What the library says, in the walk's terms.
    fn library(reader: &Reader<Shared>, ip: IpAddr) -> Walk {
        match reader.lookup(ip).expect("lookup").offset() {
            Some(offset) => Walk::Record(offset),
            None => Walk::NotFound,
        }
    }

    #[test]
    fn walks_find_the_records_the_library_finds() {
        let files = [
            ("GeoIP2-Country-Test.mmdb", fixture("GeoIP2-Country-Test.mmdb"), 28),
            ("GeoLite2-ASN-Test.mmdb", fixture("GeoLite2-ASN-Test.mmdb"), 28),
            ("dbip-country-subset.mmdb", fixture("dbip-country-subset.mmdb"), 24),
            ("dbip-country-subset (32-bit)", with_32_bit_records(&fixture("dbip-country-subset.mmdb")), 32),
        ];
        let opened: Vec<(&str, Reader<Shared>, Tree)> = files
            .into_iter()
            .map(|(name, bytes, size)| {
                let bytes = shared(bytes);
                let reader = Reader::from_source(bytes.clone()).expect("opens");
                assert_eq!(reader.metadata().record_size, size, "{name}");
                let tree = Tree::new(bytes, reader.metadata()).expect("walkable");
                (name, reader, tree)
            })
            .collect();
        let trees: [Option<&Tree>; LANES] = std::array::from_fn(|i| Some(&opened[i].2));
        let mut found = 0;
        for (_, reader, _) in &opened {
            for ip in probes(reader) {
                let walks = walk_together(trees, ip);
                for (lane, (name, reader, _)) in opened.iter().enumerate() {
                    assert_eq!(walks[lane], library(reader, ip), "{name}: {ip}");
                    found += usize::from(matches!(walks[lane], Walk::Record(_)));
                }
                // The first walk of a prefix fills the jump table, later ones start from it.
                assert_eq!(walk_together(trees, ip), walks, "from the jump table: {ip}");
            }
        }
        assert!(found > 1000, "the probes reach records ({found})");
        let filled = |t: &[AtomicU32]| t.iter().filter(|n| n.load(Ordering::Relaxed) != 0).count();
        let (v4, v6) = (filled(&opened[0].2.jump_v4), filled(&opened[0].2.jump_v6));
        assert!(v4 > 1000 && v4 < 1 << JUMP_BITS && v6 > 1000, "tables filled as walked: {v4}, {v6}");
        let (v4, v6) = (filled(&opened[0].2.coarse_v4), filled(&opened[0].2.coarse_v6));
        assert!(v4 > 1000 && v4 < 1 << COARSE_BITS && v6 > 1000, "coarse tables filled as walked: {v4}, {v6}");
        // A lane without a tree is not walked; the others are unaffected.
        let ip: IpAddr = "81.2.69.160".parse().expect("address");
        let walks = walk_together([None, Some(&opened[0].2), None, None], ip);
        assert_eq!(walks[0], Walk::Unknown);
        assert_eq!(walks[1], library(&opened[0].1, ip));
        assert!(matches!(walks[1], Walk::Record(_)));
    }

    #[test]
    fn ipv4_only_databases_are_left_to_the_library() {
        let bytes = shared(fixture("MaxMind-DB-test-ipv4-24.mmdb"));
        let reader = Reader::from_source(bytes.clone()).expect("opens");
        assert!(Tree::new(bytes, reader.metadata()).is_none());
    }
}
