//! The emulator join (issue 12): a guest journal and a host journal written by the journal
//! fixtures, joined with exact bytes; unmatched flows on both sides, the skew window's edge, two
//! packages to the same remote at different times, pairs whose bytes differ, every format.

use std::{path::Path, sync::Arc};

use serde_json::{Value, json};

use crate::{
    identity::{
        App,
        android::{AndroidIdentity, UidKind},
    },
    journal::{
        JournalReader, JournalWriter, TimeRange,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{EMULATOR_APP_PREFIX, EmulatorJoin, Format, Period, Report, ReportQuery},
    tracker::record::RecordKind::{Close, Update},
    zone::Zone,
};

/// Monday 2026-11-16T00:00:00Z.
const T0: i64 = 1_794_787_200;
/// The host's emulator app.
const EMU: &str = "android-emulator:Pixel_Test/emulator-5554";
const TIKTOK: &str = "com.zhiliaoapp.musically";
const MAPS: &str = "com.google.android.apps.maps";

fn package(name: &str, app_id: u32) -> Arc<App> {
    let mut app = Arc::unwrap_or_clone(fixtures::app(name));
    app.uid = app_id;
    app.android = Some(AndroidIdentity {
        package: Some(name.to_owned()),
        packages: vec![name.to_owned()],
        user_id: 0,
        app_id,
        kind: UidKind::App,
    });
    Arc::new(app)
}

/// One flow with an open record at `first` and a close record at `last`, bytes split across both.
fn flow(
    w: &mut JournalWriter,
    app: &Arc<App>,
    cookie: u64,
    remote: &str,
    (first, last): (i64, i64),
    (tx, rx): (u64, u64),
) {
    let dest = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let mut f = Flow::new(cookie, remote, at(first));
    w.append(&f.record(Update, at(first), tx / 2, rx / 2), app, Some(&dest));
    w.append(&f.record(Close, at(last), tx - tx / 2, rx - rx / 2), app, Some(&dest));
}

fn journals(dir: &Path) -> (JournalWriter, JournalWriter) {
    (writer_in(&dir.join("guest")), writer_in(&dir.join("host")))
}

fn day() -> TimeRange {
    TimeRange { since: at(T0), until: at(T0 + 86_400) }
}

fn join_of(guest: JournalWriter, host: JournalWriter, skew: u64) -> EmulatorJoin {
    let (mut guest, mut host) = (guest, host);
    guest.flush().expect("flush guest");
    host.flush().expect("flush host");
    let g = JournalReader::open(guest.path()).expect("guest reader");
    let h = JournalReader::open(host.path()).expect("host reader");
    EmulatorJoin::build(&g, &h, day(), skew).expect("join")
}

fn json_of(j: &EmulatorJoin) -> Value {
    serde_json::to_value(j).expect("json")
}

#[test]
fn emulator_app_names_carry_the_join_prefix() {
    let name = crate::identity::emulator::emulator_app(
        ["/opt/emu/qemu-system-x86_64", "-avd", "Pixel_Test", "-port", "5554"].map(str::as_bytes),
    );
    assert_eq!(name.as_deref(), Some(EMU));
    assert!(EMU.starts_with(EMULATOR_APP_PREFIX));
}

#[test]
fn host_confirms_exact_bytes_and_reports_unmatched_flows_on_both_sides() {
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let tiktok = package(TIKTOK, 10_123);
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    // Guest: two flows to the same server, one to a server the host never saw.
    flow(&mut guest, &tiktok, 1, "192.0.2.10:443", (T0 + 3600, T0 + 3660), (1_234, 56_789));
    flow(&mut guest, &tiktok, 2, "192.0.2.10:443", (T0 + 7200, T0 + 7201), (100, 200));
    flow(&mut guest, &tiktok, 3, "203.0.113.5:80", (T0 + 3600, T0 + 3605), (77, 88));
    // Host: the emulator's relayed flows, its clock 40 s ahead; its own traffic to an update
    // server; another app's flow to the guest's server at the same time (not an emulator).
    flow(&mut host, &emu, 11, "192.0.2.10:443", (T0 + 3640, T0 + 3700), (1_234, 56_789));
    flow(&mut host, &emu, 12, "192.0.2.10:443", (T0 + 7240, T0 + 7241), (100, 200));
    flow(&mut host, &emu, 13, "198.51.100.7:443", (T0 + 3600, T0 + 3601), (5_000, 9_000));
    flow(&mut host, &fixtures::app("firefox"), 14, "203.0.113.5:80", (T0 + 3600, T0 + 3605), (77, 88));

    let j = join_of(guest, host, 120);
    let doc = json_of(&j);
    assert_eq!(doc["emulators"], json!([EMU]));
    assert_eq!(doc["skew_tolerance_secs"], 120);
    let p = &doc["packages"][0];
    assert_eq!(doc["packages"].as_array().map(Vec::len), Some(1));
    assert_eq!((&p["app"], &p["package"]), (&json!(TIKTOK), &json!(TIKTOK)));
    assert_eq!(p["guest"], json!({"payload_tx": 1_411, "payload_rx": 57_077, "flows": 3}));
    assert_eq!(p["matched"], json!({"payload_tx": 1_334, "payload_rx": 56_989, "flows": 2}));
    assert_eq!(p["confirmed"], json!({"payload_tx": 1_334, "payload_rx": 56_989, "flows": 2}));
    assert_eq!(p["unmatched"], json!({"payload_tx": 77, "payload_rx": 88, "flows": 1}));
    assert_eq!(p["differences"], json!([]));
    assert_eq!(
        p["endpoints"],
        json!([
            {"protocol": "tcp", "ip": "192.0.2.10", "port": 443,
             "guest": {"payload_tx": 1_334, "payload_rx": 56_989, "flows": 2},
             "confirmed": {"payload_tx": 1_334, "payload_rx": 56_989, "flows": 2}, "unmatched_flows": 0},
            {"protocol": "tcp", "ip": "203.0.113.5", "port": 80,
             "guest": {"payload_tx": 77, "payload_rx": 88, "flows": 1},
             "confirmed": {"payload_tx": 0, "payload_rx": 0, "flows": 0}, "unmatched_flows": 1},
        ])
    );
    assert_eq!(
        doc["unexplained"],
        json!([{"emulator": EMU, "protocol": "tcp", "ip": "198.51.100.7", "port": 443,
                "host": {"payload_tx": 5_000, "payload_rx": 9_000, "flows": 1}}])
    );
}

#[test]
fn the_skew_window_includes_its_edge_and_nothing_beyond() {
    for (skew, host_start, matched) in
        [(120, 3600 + 10 + 120, true), (120, 3600 + 10 + 121, false), (30, 3600 - 30, true)]
    {
        let dir = tempdir();
        let (mut guest, mut host) = journals(dir.path());
        let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
        // Guest flow [T0+3600, T0+3610]; host flow of one second starting at `host_start`.
        flow(&mut guest, &package(MAPS, 10_200), 1, "192.0.2.20:443", (T0 + 3600, T0 + 3610), (500, 600));
        flow(&mut host, &emu, 2, "192.0.2.20:443", (T0 + host_start, T0 + host_start + 1), (500, 600));
        let j = join_of(guest, host, skew);
        let p = &j.packages[0];
        assert_eq!(p.matched.flows, u64::from(matched), "skew {skew} host start +{host_start}");
        assert_eq!(p.confirmed.payload_tx, if matched { 500 } else { 0 });
        assert_eq!(j.unexplained.len(), usize::from(!matched));
    }
    // The same second, one second outside the window on the other side.
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    flow(&mut guest, &package(MAPS, 10_200), 1, "192.0.2.20:443", (T0 + 3600, T0 + 3610), (500, 600));
    flow(&mut host, &emu, 2, "192.0.2.20:443", (T0 + 3600 - 32, T0 + 3600 - 31), (500, 600));
    let j = join_of(guest, host, 30);
    assert_eq!((j.packages[0].unmatched.flows, j.unexplained[0].host.flows), (1, 1));
}

#[test]
fn two_packages_to_the_same_remote_get_their_own_host_flows() {
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    let (tiktok, maps) = (package(TIKTOK, 10_123), package(MAPS, 10_200));
    // Ten minutes apart, and (second pair) 60 s apart, both inside each other's window: the
    // closest host flow goes to each guest flow.
    flow(&mut guest, &tiktok, 1, "192.0.2.30:443", (T0 + 3600, T0 + 3630), (1_000, 2_000));
    flow(&mut guest, &maps, 2, "192.0.2.30:443", (T0 + 4200, T0 + 4230), (3_000, 4_000));
    flow(&mut guest, &tiktok, 3, "192.0.2.31:443", (T0 + 5000, T0 + 5010), (11, 12));
    flow(&mut guest, &maps, 4, "192.0.2.31:443", (T0 + 5060, T0 + 5070), (13, 14));
    // Host clock 5 s ahead; written in reverse order so order of rows cannot decide.
    flow(&mut host, &emu, 14, "192.0.2.31:443", (T0 + 5065, T0 + 5075), (13, 14));
    flow(&mut host, &emu, 13, "192.0.2.31:443", (T0 + 5005, T0 + 5015), (11, 12));
    flow(&mut host, &emu, 12, "192.0.2.30:443", (T0 + 4205, T0 + 4235), (3_000, 4_000));
    flow(&mut host, &emu, 11, "192.0.2.30:443", (T0 + 3605, T0 + 3635), (1_000, 2_000));
    let j = join_of(guest, host, 120);
    let get = |app: &str| j.packages.iter().find(|p| p.app == app).expect("package");
    let (t, m) = (get(TIKTOK), get(MAPS));
    assert_eq!((t.confirmed.payload_tx, t.confirmed.payload_rx, t.confirmed.flows), (1_011, 2_012, 2));
    assert_eq!((m.confirmed.payload_tx, m.confirmed.payload_rx, m.confirmed.flows), (3_013, 4_014, 2));
    assert!(t.differences.is_empty() && m.differences.is_empty(), "{t:?} {m:?}");
    assert!(j.unexplained.is_empty());
    // Sorted by guest payload, largest first.
    assert_eq!(j.packages.iter().map(|p| p.app.as_str()).collect::<Vec<_>>(), [MAPS, TIKTOK]);
}

#[test]
fn differing_pairs_are_listed_and_every_format_shows_the_join() {
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    flow(&mut guest, &package(TIKTOK, 10_123), 1, "192.0.2.40:443", (T0 + 3600, T0 + 3610), (4_000, 8_000));
    flow(&mut host, &emu, 2, "192.0.2.40:443", (T0 + 3600, T0 + 3610), (4_000, 7_999));
    flow(&mut host, &emu, 3, "198.51.100.9:53", (T0 + 3600, T0 + 3600), (40, 120));
    guest.flush().expect("flush");
    host.flush().expect("flush");
    let g = JournalReader::open(guest.path()).expect("guest");
    let h = JournalReader::open(host.path()).expect("host");
    let zone = Zone::get("UTC").expect("zone");
    let query = ReportQuery::new(Period::iso_week("2026-W47", &zone).expect("week"));
    let mut report = Report::build(&h, &query).expect("build");
    let mut plain = Vec::new();
    report.render(Format::Json, &mut plain).expect("json");
    assert!(serde_json::from_slice::<Value>(&plain).expect("json").get("emulator_join").is_none());
    report.emulator_join = Some(EmulatorJoin::build(&g, &h, query.period.time_range(), 120).expect("join"));

    let p = &report.emulator_join.as_ref().expect("join").packages[0];
    assert_eq!(p.confirmed.payload_rx, 7_999);
    assert_eq!(p.differences.len(), 1);
    assert_eq!((p.differences[0].guest_rx, p.differences[0].host_rx), (8_000, 7_999));

    let render = |format| {
        let mut out = Vec::new();
        report.render(format, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    };
    let doc: Value = serde_json::from_str(&render(Format::Json)).expect("json");
    assert_eq!(doc["emulator_join"]["packages"][0]["confirmed"]["payload_rx"], 7_999);
    assert_eq!(doc["emulator_join"]["unexplained"][0]["ip"], "198.51.100.9");
    let csv = render(Format::Csv);
    let rows: Vec<Vec<String>> =
        csv.lines().filter(|l| l.starts_with("join_")).map(|l| l.split(',').map(str::to_owned).collect()).collect();
    // section, app, key, kind, ..., payload_tx (11), payload_rx (12), payload (13), ..., flows (16)
    let pick = |section: &str, kind: &str| {
        rows.iter()
            .find(|r| r[0] == section && r[3] == kind)
            .map(|r| (r[11].clone(), r[12].clone(), r[16].clone()))
            .expect("csv row")
    };
    assert_eq!(pick("join_package", "guest"), ("4000".into(), "8000".into(), "1".into()));
    assert_eq!(pick("join_package", "confirmed"), ("4000".into(), "7999".into(), "1".into()));
    assert_eq!(pick("join_difference", "host"), ("4000".into(), "7999".into(), "1".into()));
    assert_eq!(pick("join_unexplained", "host"), ("40".into(), "120".into(), "1".into()));
    // The HTML page writes `/` as `&#x2f;`.
    for text in [render(Format::Markdown), render(Format::Table), render(Format::Html).replace("&#x2f;", "/")] {
        assert!(text.contains("Emulator join: host-confirmed bytes per package"), "{text}");
        assert!(text.contains("192.0.2.40:443"), "{text}");
        assert!(text.contains("198.51.100.9:53"), "{text}");
        assert!(
            text.contains("guest 4,000 B (4.0 kB) / 8,000 B (8.0 kB), host 4,000 B (4.0 kB) / 7,999 B (8.0 kB)"),
            "{text}"
        );
    }
}

/// A journal written before the Android columns existed (`apps` without `android_*`, schema 8,
/// read through `journal::legacy`'s shadow views): the join and the report read it, packages are
/// `null`.
#[test]
fn a_guest_journal_from_before_the_android_columns_joins_with_null_packages() {
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    flow(&mut guest, &fixtures::app("curl"), 1, "192.0.2.50:443", (T0 + 3600, T0 + 3601), (10, 20));
    flow(&mut host, &emu, 2, "192.0.2.50:443", (T0 + 3600, T0 + 3601), (10, 20));
    guest.flush().expect("flush");
    host.flush().expect("flush");
    let path = guest.path().to_path_buf();
    drop(guest);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    for column in ["android_package", "android_packages", "android_user_id", "android_app_id", "android_kind"] {
        conn.execute_batch(&format!("ALTER TABLE apps DROP COLUMN {column}")).expect("drop column");
    }
    conn.execute_batch("PRAGMA user_version = 8").expect("version");
    drop(conn);
    let g = JournalReader::open(&path).expect("guest");
    let h = JournalReader::open(host.path()).expect("host");
    let j = EmulatorJoin::build(&g, &h, day(), 120).expect("join");
    assert_eq!((j.packages[0].app.as_str(), j.packages[0].package.as_deref()), ("curl", None));
    assert_eq!((j.packages[0].confirmed.payload_tx, j.packages[0].confirmed.payload_rx), (10, 20));
    let zone = Zone::get("UTC").expect("zone");
    let report = Report::build(&g, &ReportQuery::new(Period::iso_week("2026-W47", &zone).expect("week")));
    assert_eq!(report.expect("report of the old journal").apps[0].traffic.payload_tx, 10);
}

/// A destination and protocol from a tampered guest (or host) journal: a newline, an SGR
/// sequence, HTML, a table pipe, Markdown emphasis and a link, a bidi override.
const BAD_FIELD: &str = "h\n\x1b[31m<i>|*[l](x)=\u{202e}";

#[test]
fn hostile_destinations_and_protocols_of_the_join_are_escaped_in_every_document_format() {
    let dir = tempdir();
    let (mut guest, mut host) = journals(dir.path());
    let emu = Arc::new(App { name: EMU.into(), ..Arc::unwrap_or_clone(fixtures::app("qemu")) });
    flow(&mut guest, &package(TIKTOK, 10_123), 1, "192.0.2.40:443", (T0 + 3600, T0 + 3610), (4_000, 8_000));
    flow(&mut host, &emu, 2, "192.0.2.40:443", (T0 + 3600, T0 + 3610), (4_000, 7_999));
    guest.flush().expect("flush");
    host.flush().expect("flush");
    for w in [&guest, &host] {
        let conn = rusqlite::Connection::open(w.path()).expect("raw");
        conn.execute("UPDATE connections SET remote_ip = ?1, protocol = ?1", [BAD_FIELD]).expect("tamper");
    }
    let g = JournalReader::open(guest.path()).expect("guest");
    let h = JournalReader::open(host.path()).expect("host");
    let query = ReportQuery::new(Period::iso_week("2026-W47", &Zone::get("UTC").expect("zone")).expect("week"));
    let mut report = Report::build(&h, &query).expect("build");
    let mut join = EmulatorJoin::build(&g, &h, query.period.time_range(), 120).expect("join");
    // Same address and protocol on both sides: the pair matches and its byte difference is listed.
    let p = &join.packages[0];
    assert_eq!((p.endpoints[0].ip.as_str(), p.endpoints[0].protocol.as_str()), (BAD_FIELD, BAD_FIELD));
    assert_eq!(p.differences.len(), 1, "{:?}", p.differences);
    // And once more as traffic no guest flow explains.
    let d = &p.differences[0];
    join.unexplained.push(crate::report::UnexplainedTraffic {
        emulator: EMU.into(),
        protocol: d.protocol.clone(),
        ip: d.ip.clone(),
        port: d.port,
        host: crate::report::FlowBytes { payload_tx: 1, payload_rx: 2, flows: 1 },
    });
    report.emulator_join = Some(join);
    let render = |format| {
        let mut out = Vec::new();
        report.render(format, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    };
    let visible = crate::escape::terminal(BAD_FIELD);

    let table = render(Format::Table);
    super::hostile::assert_no_raw_controls(&table);
    assert!(!table.lines().any(|l| l.contains("<i>|*[l](x)=") && !l.contains(&visible)), "a split row:\n{table}");
    assert!(table.contains(&format!("{visible} {visible}:443 via {EMU}")), "difference:\n{table}");
    assert!(table.contains(&format!("{visible}:443")), "{table}");

    let md = render(Format::Markdown);
    let cells = super::hostile::markdown_cells(&md);
    assert!(cells.contains(&format!("{visible}:443")), "destination cells: {cells:?}");
    assert!(cells.contains(&visible), "protocol cells: {cells:?}");

    let html = render(Format::Html);
    super::hostile::assert_no_raw_controls(&html);
    assert!(!html.contains("<i>|") && !html.contains("\x1b"), "{html}");
    assert!(html.contains("\\x1b[31m&lt;i&gt;"), "{html}");
    assert!(html.contains("\\u{202e}"), "{html}");
}
