//! Names end to end (issue 10): a real DNS server (dnsmasq, authoritative for `svc.test`) in the
//! server namespace, a real stub resolver (dnsmasq on 127.0.0.1:53) in the client namespace
//! forwarding to it, and two apps (uid rules `app-alpha`, `app-beta`) that resolve names through
//! the stub and then connect: TCP with a real rustls ClientHello, plain TCP, and QUIC Initials
//! from quinn-proto. Records and the report's "by service" section must name each flow with the
//! right host name and source, per app, with exact bytes.

use std::{
    io::Write as _,
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, TYPE, rdata::RData};

use crate::{
    daemon::Monitor,
    env::{Netns, Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, read_to_end, say},
};

/// Test addresses from the test databases (GeoIP2-Country-Test / GeoLite2-ASN-Test).
const SE: &str = "89.160.20.112"; // SE, AS29518 Bredband2 AB
const GB: &str = "81.2.69.142"; // GB
/// The authoritative server's address in the server namespace.
const DNS_SERVER: &str = "10.77.0.53";
/// The stub resolver in the client namespace.
const STUB: &str = "127.0.0.1:53";

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(file)
}

/// A dnsmasq process in a namespace, killed on drop.
struct Dnsmasq(Child);

impl Dnsmasq {
    fn start(ns: &Netns, args: &[String]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null"])
            .args(["--no-resolv", "--no-hosts", "--bind-interfaces", "--pid-file=", "--user=root", "--port=53"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed (`cargo xtask setup` installs dnsmasq-base)");
        Self(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DNS query for the A record of `host`.
fn query(host: &str, id: u16) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.questions.push(Question::new(Name::new_unchecked(host), QTYPE::TYPE(TYPE::A), QCLASS::CLASS(CLASS::IN), false));
    p.build_bytes_vec().unwrap()
}

/// Resolves `host` through the resolver at `server` (one UDP query, a few retries).
fn resolve(server: &str, host: &str) -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 1500];
    for id in 1..=10 {
        sock.send(&query(host, id)).unwrap();
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let reply = Packet::parse(&buf[..n]).unwrap();
        for a in &reply.answers {
            if let RData::A(a) = &a.rdata {
                return Some(Ipv4Addr::from(a.address));
            }
        }
        return None;
    }
    None
}

/// The TLS records of a rustls client's ClientHello for `host`.
pub(crate) fn client_hello(host: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The client datagrams of a quinn-proto connection attempt to `server` named `host`.
fn quic_initials(server: SocketAddr, host: &str) -> Vec<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let mut endpoint = quinn_proto::Endpoint::new(Arc::new(quinn_proto::EndpointConfig::default()), None, false, None);
    let now = Instant::now();
    let (_, mut conn) = endpoint.connect(now, config, server, host).unwrap();
    let mut datagrams = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = conn.poll_transmit(now, 10, &mut buf) {
        let segment = t.segment_size.unwrap_or(t.size);
        datagrams.extend(buf[..t.size].chunks(segment).map(<[u8]>::to_vec));
        buf.clear();
    }
    datagrams
}

/// Helper roles of this file.
pub fn helper(role: &str, args: &[String]) {
    match role {
        // names-client STUB HOST MODE PORT SEND: resolve HOST through STUB, then talk to it on
        // PORT: `tls` (a ClientHello then SEND bytes), `plain` (SEND bytes), `quic` (Initials).
        "names-client" => {
            name("mon-names");
            let host = &args[1];
            let ip = resolve(&args[0], host).unwrap_or_else(|| panic!("{host} did not resolve"));
            let server = SocketAddr::from((ip, args[3].parse::<u16>().unwrap()));
            let send: usize = args[4].parse().unwrap();
            if args[2] == "quic" {
                let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                let datagrams = quic_initials(server, host);
                let mut tx = 0;
                for d in &datagrams {
                    tx += sock.send_to(d, server).unwrap();
                }
                say(&json!({"addr": server.to_string(), "tx": tx, "datagrams": datagrams.len()}));
                return;
            }
            let mut first = if args[2].starts_with("tls") { client_hello(host) } else { Vec::new() };
            let hello = first.len();
            first.extend(pattern(send));
            let mut s = TcpStream::connect(server).unwrap();
            if args[2] == "tls-split" {
                // The ClientHello in two TCP segments: half, a pause, the rest.
                s.set_nodelay(true).unwrap();
                s.write_all(&first[..hello / 2]).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(&first[hello / 2..]).unwrap();
            } else {
                s.write_all(&first).unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            say(&json!({"addr": server.to_string(), "tx": first.len(), "rx": rx}));
        }
        // names-udp-sink BIND COUNT: receives COUNT datagrams, reports their bytes.
        "names-udp-sink" => {
            name("mon-udp-sink");
            let sock = UdpSocket::bind(&args[0]).unwrap();
            say(&json!({"ready": true}));
            let count: usize = args[1].parse().unwrap();
            let mut buf = [0u8; 65536];
            let mut rx = 0;
            for _ in 0..count {
                rx += sock.recv_from(&mut buf).unwrap().0;
            }
            say(&json!({"rx": rx}));
        }
        other => panic!("unknown helper role {other}"),
    }
}

/// The `names` object of the closed flow of `app` to `remote`.
fn names_of<'a>(flows: &'a [Value], app: &str, remote: &str, tx: u64) -> &'a Value {
    flows
        .iter()
        .find(|f| {
            f["event"] == "close" && f["app"]["name"] == app && f["remote"] == remote && f["payload"]["tx_bytes"] == tx
        })
        .map(|f| &f["names"])
        .unwrap_or_else(|| panic!("no closed flow of {app} to {remote} with {tx} bytes sent"))
}

pub fn flows_are_named_per_app_from_dns_sni_and_quic() {
    let pair = Pair::new("10.77.0.1", &[SE, GB, DNS_SERVER], "fd77::1", &["fd77::2"]);
    let _server = Dnsmasq::start(
        &pair.b,
        &[
            format!("--listen-address={DNS_SERVER}"),
            format!("--address=/alpha.svc.test/{SE}"),
            format!("--address=/beta.svc.test/{SE}"),
            format!("--address=/quic.svc.test/{GB}"),
            format!("--address=/split.svc.test/{SE}"),
            // `bücher.svc.test`: apps put the ASCII form on the wire.
            format!("--address=/xn--bcher-kva.svc.test/{SE}"),
        ],
    );
    let _stub = Dnsmasq::start(&pair.a, &["--listen-address=127.0.0.1".into(), format!("--server={DNS_SERVER}")]);
    // The stub answers once both are up (queried from the test process, outside the cgroup).
    let ready = Instant::now();
    let ns = std::fs::File::open(pair.a.path()).unwrap();
    let probe = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        while resolve(STUB, "alpha.svc.test").is_none() {
            assert!(ready.elapsed() < Duration::from_secs(10), "dnsmasq did not answer");
        }
    });
    probe.join().unwrap();

    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut tcp = spawn("tcp-server", &[format!("{SE}:443"), "3000".into(), "5".into()], b);
    tcp.line();
    let mut udp = spawn("names-udp-sink", &[format!("{GB}:443"), "1".into()], b);
    udp.line();
    let extra = format!(
        "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n\n\
         [[apps]]\nname = \"app-alpha\"\nuid = [4251]\n\n[[apps]]\nname = \"app-beta\"\nuid = [4252]\n",
        fixture("GeoIP2-Country-Test.mmdb").display(),
        fixture("GeoLite2-ASN-Test.mmdb").display()
    );
    let mon = Monitor::start(&cg.path, &extra);
    let a = |uid| Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(uid) };
    let client = |host: &str, mode: &str, port: u16, send: usize, uid| {
        let args = [STUB.to_owned(), host.to_owned(), mode.to_owned(), port.to_string(), send.to_string()];
        spawn("names-client", &args, a(uid)).finish().remove(0)
    };
    let alpha_tls = client("alpha.svc.test", "tls", 443, 10_000, 4251);
    let alpha_plain = client("alpha.svc.test", "plain", 443, 20_000, 4251);
    let beta_plain = client("beta.svc.test", "plain", 443, 30_000, 4252);
    let beta_split = client("split.svc.test", "tls-split", 443, 40_000, 4252);
    let alpha_quic = client("quic.svc.test", "quic", 443, 0, 4251);
    let alpha_idn = client("xn--bcher-kva.svc.test", "plain", 443, 5_000, 4251);
    tcp.finish();
    // quinn-proto sends its Initial in one datagram or more; the sink reads the first.
    let _ = udp.child.kill();
    let out = mon.stop();
    out.assert_nothing_lost();

    let tx = |v: &Value| v["tx"].as_u64().unwrap();
    let se = format!("{SE}:443");
    let n = names_of(&out.flows, "app-alpha", &se, tx(&alpha_tls));
    assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some("alpha.svc.test"), Some("sni")), "{n}");
    assert_eq!(n["registrable_domain"], "svc.test", "{n}");
    let n = names_of(&out.flows, "app-alpha", &se, tx(&alpha_plain));
    assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some("alpha.svc.test"), Some("dns")), "{n}");
    // Same address, other app, other name: its own answer.
    let n = names_of(&out.flows, "app-beta", &se, tx(&beta_plain));
    assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some("beta.svc.test"), Some("dns")), "{n}");
    // A ClientHello split across two segments is reassembled.
    let n = names_of(&out.flows, "app-beta", &se, tx(&beta_split));
    assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some("split.svc.test"), Some("sni")), "{n}");
    let quic = out
        .flows
        .iter()
        .find(|f| f["app"]["name"] == "app-alpha" && f["remote"] == format!("{GB}:443"))
        .unwrap_or_else(|| panic!("no QUIC flow: {:#?}", out.flows));
    assert_eq!(quic["names"]["hostname"], "quic.svc.test", "{}", quic["names"]);
    assert_eq!(quic["names"]["source"], "quic_sni", "{}", quic["names"]);
    let names = &out.stats["names"];
    assert!(names["dns_responses"].as_u64().unwrap() >= 5 && names["sni"] == 2 && names["quic_sni"] == 1, "{names}");
    assert_eq!(names["malformed_total"], 0, "{names}");
    assert_eq!(out.stats["kernel"]["copies_lost"], 0, "{}", out.stats);

    // The report's "by service": exact payload per app and host name.
    let doc = out.report_json();
    let services = doc["services"].as_array().unwrap();
    let app = |name: &str| services.iter().find(|s| s["app"] == name).unwrap_or_else(|| panic!("{doc:#}"));
    let host = |a: &Value, h: &str| -> (u64, u64) {
        let e = a["hostnames"].as_array().unwrap().iter().find(|x| x["name"] == h).unwrap_or_else(|| panic!("{a:#}"));
        (e["traffic"]["payload_tx"].as_u64().unwrap(), e["traffic"]["payload_rx"].as_u64().unwrap())
    };
    let alpha = app("app-alpha");
    assert_eq!(host(alpha, "alpha.svc.test"), (tx(&alpha_tls) + tx(&alpha_plain), 6000));
    assert_eq!(host(alpha, "quic.svc.test").0, tx(&alpha_quic));
    let alpha_host = alpha["hostnames"].as_array().unwrap().iter().find(|x| x["name"] == "alpha.svc.test").unwrap();
    assert_eq!(alpha_host["countries"], json!(["SE"]));
    assert_eq!(alpha_host["asns"][0]["asn"], 29518);
    assert_eq!(alpha_host["sources"], json!(["dns", "sni"]));
    let beta = app("app-beta");
    assert_eq!(host(beta, "beta.svc.test"), (tx(&beta_plain), 3000));
    assert!(beta["hostnames"].as_array().unwrap().iter().all(|x| x["name"] != "alpha.svc.test"));
    // Top endpoints show the names the app used for them.
    let apps = doc["apps"].as_array().unwrap();
    let beta_app = apps.iter().find(|a| a["app"] == "app-beta").unwrap();
    let ep = beta_app["top_endpoints"].as_array().unwrap().iter().find(|e| e["ip"] == SE).unwrap();
    assert_eq!(ep["hostnames"], json!(["beta.svc.test", "split.svc.test"]), "{ep}");

    // `monitor lookup HOSTNAME` lists, per app, the address reached under that name.
    let lookup = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["lookup", "--json", "--journal"])
        .arg(out.dir.path().join("journal.db"))
        .arg("alpha.svc.test")
        .output()
        .unwrap();
    assert!(lookup.status.success(), "{}", String::from_utf8_lossy(&lookup.stderr));
    let v: Value = serde_json::from_slice(&lookup.stdout).unwrap();
    let seen: Vec<(&str, &str, &str, u64)> = v["answers"][0]["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap();
            (text("app"), text("ip"), text("name_source"), s["payload_bytes"].as_u64().unwrap())
        })
        .collect();
    let rx = 3000; // the server's reply per connection
    assert_eq!(
        seen,
        [("app-alpha", SE, "dns", tx(&alpha_plain) + rx), ("app-alpha", SE, "sni", tx(&alpha_tls) + rx)],
        "{v:#}"
    );
    // An internationalised name, typed as a person writes it, finds the ASCII form the app used.
    let lookup = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["lookup", "--journal"])
        .arg(out.dir.path().join("journal.db"))
        .arg("Bücher.svc.test")
        .output()
        .unwrap();
    assert!(lookup.status.success(), "{}", String::from_utf8_lossy(&lookup.stderr));
    let said = String::from_utf8(lookup.stdout).unwrap();
    let line = format!(
        "Bücher.svc.test (xn--bcher-kva.svc.test): app app-alpha reached {SE} (dns), 1 flows, {} payload bytes,",
        tx(&alpha_idn) + rx
    );
    assert!(said.lines().any(|l| l.starts_with(&line)), "{line}\n{said}");
}
