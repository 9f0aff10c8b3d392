//! Inclusive address ranges → CIDR blocks, in one 128-bit space where IPv4 `a.b.c.d` is
//! `::a.b.c.d` (the `::/96` subtree of an IPv6 MMDB tree).
//!
//! Plain `u128` arithmetic: `maxminddb-writer`'s `IpAddrWithMask::from_ip_range` subtracts
//! per byte and is wrong or panics for many ranges (geodata notes §4).

use std::net::IpAddr;

/// A CIDR block in the 128-bit space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    /// First address.
    pub start: u128,
    /// Prefix length, 0..=128 (IPv4 blocks: 96 + IPv4 prefix length).
    pub len: u8,
}

impl Block {
    /// Last address of the block.
    pub fn end(self) -> u128 {
        self.start | u128::MAX.checked_shr(u32::from(self.len)).unwrap_or(0)
    }

    /// The tree path: the first `len` bits of `start`, most significant first.
    pub fn bits(self) -> impl Iterator<Item = bool> {
        (0..u32::from(self.len)).map(move |i| (self.start >> (127 - i)) & 1 == 1)
    }
}

/// Position of `ip` in the 128-bit space (IPv4 under `::/96`).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The fewest CIDR blocks covering exactly `start..=end` (requires `start <= end`), in order.
pub fn split(mut start: u128, end: u128) -> Vec<Block> {
    debug_assert!(start <= end);
    let mut blocks = Vec::new();
    loop {
        // Largest block aligned at `start` that does not pass `end`: 2^k addresses.
        let align = start.trailing_zeros(); // 128 when start == 0
        let remaining = end - start; // addresses after `start`
        let fit = if remaining == u128::MAX { 128 } else { (remaining + 1).ilog2() };
        let k = align.min(fit);
        #[expect(clippy::cast_possible_truncation, reason = "k <= 128")]
        let block = Block { start, len: (128 - k) as u8 };
        blocks.push(block);
        let last = block.end();
        if last == end {
            return blocks;
        }
        start = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(s: &str) -> u128 {
        to_u128(IpAddr::V4(s.parse::<Ipv4Addr>().unwrap()))
    }

    fn show(blocks: &[Block]) -> Vec<String> {
        blocks
            .iter()
            .map(|b| {
                if b.start <= u128::from(u32::MAX) && b.len >= 96 {
                    #[expect(clippy::cast_possible_truncation, reason = "checked above")]
                    let ip = Ipv4Addr::from(b.start as u32);
                    format!("{ip}/{}", b.len - 96)
                } else {
                    format!("{}/{}", std::net::Ipv6Addr::from(b.start), b.len)
                }
            })
            .collect()
    }

    #[test]
    fn aligned_ranges_are_one_block() {
        assert_eq!(show(&split(v4("1.0.0.0"), v4("1.0.0.255"))), ["1.0.0.0/24"]);
        assert_eq!(show(&split(v4("10.0.0.7"), v4("10.0.0.7"))), ["10.0.0.7/32"]);
        assert_eq!(show(&split(v4("0.0.0.0"), v4("255.255.255.255"))), ["0.0.0.0/0"]);
    }

    #[test]
    fn awkward_ipv4_range_splits_into_the_minimal_set() {
        assert_eq!(
            show(&split(v4("1.0.0.1"), v4("1.0.0.254"))),
            [
                "1.0.0.1/32",
                "1.0.0.2/31",
                "1.0.0.4/30",
                "1.0.0.8/29",
                "1.0.0.16/28",
                "1.0.0.32/27",
                "1.0.0.64/26",
                "1.0.0.128/26",
                "1.0.0.192/27",
                "1.0.0.224/28",
                "1.0.0.240/29",
                "1.0.0.248/30",
                "1.0.0.252/31",
                "1.0.0.254/32",
            ]
        );
        // Crossing an octet boundary (per-byte subtraction gets this wrong).
        assert_eq!(show(&split(v4("1.0.4.0"), v4("1.0.7.255"))), ["1.0.4.0/22"]);
        assert_eq!(show(&split(v4("1.0.128.0"), v4("1.0.196.255"))), ["1.0.128.0/18", "1.0.192.0/22", "1.0.196.0/24"]);
        assert_eq!(show(&split(v4("1.2.3.255"), v4("1.2.4.0"))), ["1.2.3.255/32", "1.2.4.0/32"]);
    }

    #[test]
    fn whole_and_top_of_ipv6_space() {
        assert_eq!(show(&split(0, u128::MAX)), ["::/0"]);
        assert_eq!(show(&split(u128::MAX, u128::MAX)), ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"]);
        assert_eq!(show(&split(1 << 127, u128::MAX)), ["8000::/1"]);
    }

    #[test]
    fn ipv6_ranges_split_like_the_csv_rows() {
        let a: u128 = "2001:200::".parse::<std::net::Ipv6Addr>().unwrap().into();
        let b: u128 = "2001:200:1b9:ffff:ffff:ffff:ffff:ffff".parse::<std::net::Ipv6Addr>().unwrap().into();
        let blocks = split(a, b);
        assert_eq!(blocks.first().map(|b| b.start), Some(a));
        assert_eq!(blocks.last().map(|b| b.end()), Some(b));
    }

    #[test]
    fn blocks_are_contiguous_disjoint_and_aligned() {
        // Deterministic pseudo-random ranges (xorshift), IPv4 and IPv6 widths.
        let mut state: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let (mut first, mut second) = (next(), next());
            if round % 2 == 0 {
                (first, second) = (first & 0xffff_ffff, second & 0xffff_ffff);
            } else {
                second = first.saturating_add(second >> (next() % 128));
            }
            let (start, end) = (first.min(second), first.max(second));
            let blocks = split(start, end);
            let mut expect = start;
            for blk in &blocks {
                assert_eq!(blk.start, expect, "{start:#x}..={end:#x}");
                let host_bits = !(u128::MAX.checked_shl(128 - u32::from(blk.len)).unwrap_or(0));
                assert_eq!(blk.start & host_bits, 0, "aligned");
                expect = blk.end().wrapping_add(1);
            }
            assert_eq!(blocks.last().map(|b| b.end()), Some(end));
            assert!(blocks.len() <= 2 * 128);
        }
    }

    #[test]
    fn bits_follow_the_prefix() {
        let b = Block { start: v4("128.0.0.0"), len: 97 };
        let bits: Vec<bool> = b.bits().collect();
        assert_eq!(bits.len(), 97);
        assert!(bits[..96].iter().all(|b| !b));
        assert!(bits[96]);
    }
}
