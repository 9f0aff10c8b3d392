//! Names from libc's `getaddrinfo` (issue 10): a client whose resolver sends no DNS packets at all
//! (its own mount namespace gives it an /etc/hosts naming the server) resolves a name through
//! glibc's `getaddrinfo` (`std::net::ToSocketAddrs`) and sends plain TCP bytes. The flow must carry
//! that name with the source `getaddrinfo`, charged to that app only; another app reaching the same
//! address without resolving gets the host-wide `dns_host`. And a libc that cannot be probed is the
//! degradation `no_getaddrinfo_names` with its reason, not a failure.

use std::{
    io::Write as _,
    net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs as _},
};

use nix::{
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
};
use serde_json::{Value, json};

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, read_to_end, say},
};

/// Test address from the test databases (GeoIP2-Country-Test: SE).
const SE: &str = "89.160.20.112";
/// The server's IPv6 address.
const V6: &str = "fd77::2";
/// The name only the client's /etc/hosts knows.
const HOST: &str = "api.gai-test.example";
const PORT: u16 = 8080;
/// Bytes the server replies per connection.
const REPLY: u64 = 3000;

/// Helper roles of this file.
pub fn helper(role: &str, args: &[String]) {
    match role {
        // gai-client COMM IPS HOST PORT SEND: in a private mount namespace whose /etc/hosts maps
        // HOST to the comma-separated IPS, resolve "HOST:PORT" with getaddrinfo, then send SEND
        // plain bytes to each address found, one connection each (one JSON line each).
        // HOST "-": connect to the first of IPS without resolving anything.
        "gai-client" => {
            name(&args[0]);
            let ips: Vec<IpAddr> = args[1].split(',').map(|s| s.parse().unwrap()).collect();
            let host = &args[2];
            let port: u16 = args[3].parse().unwrap();
            let send: usize = args[4].parse().unwrap();
            let servers = if host == "-" {
                vec![SocketAddr::new(ips[0], port)]
            } else {
                let hosts = tempfile::NamedTempFile::new().unwrap();
                let lines: String = ips.iter().map(|ip| format!("{ip} {host}\n")).collect();
                std::fs::write(hosts.path(), format!("127.0.0.1 localhost\n{lines}")).unwrap();
                // Single-threaded here (before any thread starts), as unshare(CLONE_NEWNS) needs.
                unshare(CloneFlags::CLONE_NEWNS).unwrap();
                // Private first: the bind mount below must not propagate to the host.
                mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
                mount(Some(hosts.path()), "/etc/hosts", None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
                let mut found: Vec<SocketAddr> = format!("{host}:{port}").to_socket_addrs().unwrap().collect();
                found.sort_unstable();
                let mut expected: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
                expected.sort_unstable();
                assert_eq!(found, expected, "getaddrinfo answer");
                found
            };
            let data = pattern(send);
            for server in servers {
                let mut s = TcpStream::connect(server).unwrap();
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let rx = read_to_end(&mut s);
                say(&json!({"addr": server.to_string(), "tx": data.len(), "rx": rx}));
            }
        }
        other => panic!("unknown helper role {other}"),
    }
}

/// The closed flow of `app` to `remote` that sent `tx` bytes.
fn flow<'a>(flows: &'a [Value], app: &str, remote: &str, tx: u64) -> &'a Value {
    flows
        .iter()
        .find(|f| {
            f["event"] == "close" && f["app"]["name"] == app && f["remote"] == remote && f["payload"]["tx_bytes"] == tx
        })
        .unwrap_or_else(|| panic!("no closed flow of {app} to {remote} with {tx} bytes sent: {flows:#?}"))
}

pub fn flow_named_from_getaddrinfo_without_dns_packets() {
    let pair = Pair::new("10.77.0.1", &[SE], "fd77::1", &[V6]);
    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut server4 = spawn("tcp-server", &[format!("{SE}:{PORT}"), REPLY.to_string(), "2".into()], b);
    server4.line();
    let mut server6 = spawn("tcp-server", &[format!("[{V6}]:{PORT}"), REPLY.to_string(), "1".into()], b);
    server6.line();
    let extra = "[[apps]]\nname = \"app-gai\"\ncomm = [\"mon-gai\"]\n\n\
                 [[apps]]\nname = \"app-direct\"\ncomm = [\"mon-gai-direct\"]\n";
    let mon = Monitor::start(&cg.path, extra);
    let a = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let client = |comm: &str, ips: &str, host: &str, send: usize| {
        let args = [comm.to_owned(), ips.to_owned(), host.to_owned(), PORT.to_string(), send.to_string()];
        spawn("gai-client", &args, a).finish()
    };
    // One name, an IPv4 and an IPv6 address: both connections are named.
    let resolved = client("mon-gai", &format!("{SE},{V6}"), HOST, 12_345);
    let direct = client("mon-gai-direct", SE, "-", 23_456).remove(0);
    server4.finish();
    server6.finish();
    let out = mon.stop();
    out.assert_nothing_lost();
    assert!(
        !out.degradations.iter().any(|d| d == "no_getaddrinfo_names"),
        "getaddrinfo probe not attached: {:?}\n{}",
        out.degradations,
        out.log
    );

    assert_eq!(resolved.len(), 2, "{resolved:?}");
    for conn in &resolved {
        let remote = conn["addr"].as_str().unwrap();
        assert_eq!((conn["tx"].as_u64(), conn["rx"].as_u64()), (Some(12_345), Some(REPLY)), "{conn}");
        let f = flow(&out.flows, "app-gai", remote, 12_345);
        assert_eq!(f["payload"]["rx_bytes"], REPLY, "{f}");
        let n = &f["names"];
        assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some(HOST), Some("getaddrinfo")), "{remote}: {n}");
    }
    // The other app did not resolve: the name is the host's, not its own.
    let f = flow(&out.flows, "app-direct", &format!("{SE}:{PORT}"), direct["tx"].as_u64().unwrap());
    let n = &f["names"];
    assert_eq!((n["hostname"].as_str(), n["source"].as_str()), (Some(HOST), Some("dns_host")), "{n}");

    let names = &out.stats["names"];
    assert_eq!(names["dns_responses"], 0, "no DNS packets at all: {names}");
    assert!(names["getaddrinfo"].as_u64().unwrap() >= 1, "{names}");
    assert_eq!(names["malformed_total"], 0, "{names}");
    assert_eq!(out.stats["kernel"]["copies_lost"], 0, "{}", out.stats);

    // The report's "by service" names the bytes, with the source.
    let doc = out.report_json();
    let services = doc["services"].as_array().unwrap();
    let app = services.iter().find(|s| s["app"] == "app-gai").unwrap_or_else(|| panic!("{doc:#}"));
    let h =
        app["hostnames"].as_array().unwrap().iter().find(|x| x["name"] == HOST).unwrap_or_else(|| panic!("{app:#}"));
    assert_eq!(h["sources"], json!(["getaddrinfo"]), "{h}");
    let traffic = (h["traffic"]["payload_tx"].as_u64(), h["traffic"]["payload_rx"].as_u64());
    assert_eq!(traffic, (Some(2 * 12_345), Some(2 * REPLY)), "{h}");
}

pub fn unprobeable_libc_is_a_degradation_with_its_reason() {
    let cg = TestCgroup::new();
    // A path that does not exist, then a file that is no ELF object.
    let missing = "/nonexistent/gai-test/libc.so.6";
    let out = Monitor::start(&cg.path, &format!("[names]\ngetaddrinfo_libc = \"{missing}\"\n")).stop();
    assert!(out.degradations.iter().any(|d| d == "no_getaddrinfo_names"), "{:?}", out.degradations);
    let expected = format!("getaddrinfo probe not attached: names.getaddrinfo_libc `{missing}`: No such file");
    assert!(out.log.contains(&expected), "reason not logged ({expected}):\n{}", out.log);

    let not_elf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_elf.path(), "not a shared object\n").unwrap();
    let path = not_elf.path().display().to_string();
    let out = Monitor::start(&cg.path, &format!("[names]\ngetaddrinfo_libc = \"{path}\"\n")).stop();
    assert!(out.degradations.iter().any(|d| d == "no_getaddrinfo_names"), "{:?}", out.degradations);
    let expected =
        format!("getaddrinfo probe not attached: cannot attach `uprobe_getaddrinfo` to `getaddrinfo` in `{path}`");
    assert!(out.log.contains(&expected), "reason not logged ({expected}):\n{}", out.log);

    // Switched off: the same degradation, saying so.
    let out = Monitor::start(&cg.path, "[names]\ngetaddrinfo = false\n").stop();
    assert!(out.degradations.iter().any(|d| d == "no_getaddrinfo_names"), "{:?}", out.degradations);
    assert!(out.log.contains("disabled by names.getaddrinfo = false"), "{}", out.log);
}
