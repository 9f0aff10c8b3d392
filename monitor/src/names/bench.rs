//! Cost of each parser on real input (ignored; run in release:
//! `cargo test --release -p monitor --lib names::bench -- --ignored --nocapture`).

use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use rustls::quic::Version;

use super::{
    Hostname, Progress,
    dns::{self, Transport},
    quic::InitialReassembler,
    table::{NameTable, NameTableConfig},
    testutil::{MIN_INITIAL_DATAGRAM, TEST_DCID, crypto_frame, quic_client_hello, seal_initial, tls_client_hello},
    tls::ClientHelloReassembler,
};

fn measure(what: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    println!("{what}: {ns} ns/op ({} /s)", 1_000_000_000 / ns.max(1));
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn parser_costs() {
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, ResourceRecord, TYPE, rdata};
    let mut p = Packet::new_reply(1);
    let q =
        Question::new(Name::new_unchecked("www.example.com"), QTYPE::TYPE(TYPE::A), QCLASS::CLASS(CLASS::IN), false);
    p.questions.push(q);
    let cname = rdata::RData::CNAME(rdata::CNAME(Name::new_unchecked("e1.cdn.example.net")));
    p.answers.push(ResourceRecord::new(Name::new_unchecked("www.example.com"), CLASS::IN, 60, cname));
    for i in 0..4 {
        let a = rdata::RData::A(rdata::A { address: 0xc000_0200 + i });
        p.answers.push(ResourceRecord::new(Name::new_unchecked("e1.cdn.example.net"), CLASS::IN, 60, a));
    }
    let dns_bytes = p.build_bytes_vec_compressed().unwrap();
    measure("dns::parse (CNAME + 4 A, compressed)", 200_000, || {
        black_box(dns::parse(black_box(&dns_bytes), Transport::Udp).unwrap());
    });
    let cut = &dns_bytes[..dns_bytes.len() - 8];
    measure("dns::parse (cut inside the last answer)", 50_000, || {
        black_box(dns::parse(black_box(cut), Transport::Udp).unwrap());
    });

    let hello = tls_client_hello("api16-normal-useast5.us.tiktokv.com", &["h2", "http/1.1"], None);
    measure("tls ClientHelloReassembler (one segment)", 200_000, || {
        let mut r = ClientHelloReassembler::new();
        assert!(matches!(r.push(black_box(&hello)), Progress::Done(Some(_))));
    });

    let ch = quic_client_hello(Version::V1, "quic.example.test", &["h3"]);
    let initial = seal_initial(Version::V1, &TEST_DCID, 0, &crypto_frame(0, &ch), MIN_INITIAL_DATAGRAM);
    measure("quic InitialReassembler (1,200-byte Initial, keys derived)", 50_000, || {
        let mut r = InitialReassembler::new();
        assert!(matches!(r.push(black_box(&initial)), Progress::Done(Some(_))));
    });

    let mut table: NameTable<u32> = NameTable::new(NameTableConfig::default()).unwrap();
    let name = Hostname::parse("www.example.com").unwrap();
    let mut i = 0u32;
    measure("NameTable record_answer + lookup (256 apps, rotating addresses)", 500_000, || {
        i = i.wrapping_add(1);
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i % 100_000)));
        table.record_answer(&(i % 256), &name, &[addr], 60, u64::from(i));
        black_box(table.lookup(&(i % 256), addr, u64::from(i)));
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn table_memory() {
    let before = rss_kib();
    let mut table: NameTable<u32> = NameTable::new(NameTableConfig::default()).unwrap();
    for app in 0..256u32 {
        for i in 0..20u32 {
            let name = Hostname::parse(&format!("host-{i}.app-{app}.example.test")).unwrap();
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + app * 64 + i));
            table.record_answer(&app, &name, &[addr], 60, 1);
        }
    }
    let filled = rss_kib();
    println!("NameTable, 256 apps x 20 names: {} KiB resident", filled.saturating_sub(before));
    black_box(&table);
}
