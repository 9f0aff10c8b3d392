//! Android identities (issue 12): written to `apps`, read back per app name, and carried into
//! the report's per-app `android` object.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    fixtures::{self, Flow, at},
    int, raw, tempdir, writer_in,
};
use crate::{
    identity::{
        App,
        android::{AndroidIdentity, UidKind},
    },
    journal::{JournalReader, TimeRange},
    report::{Format, Period, Report, ReportQuery},
    tracker::record::RecordKind::Close,
    zone::Zone,
};

/// Monday 2026-11-16T00:00:00Z.
const T0: i64 = 1_794_787_200;

fn identity(packages: &[&str], uid: u32, kind: UidKind) -> AndroidIdentity {
    let packages: Vec<String> = packages.iter().map(|p| (*p).to_owned()).collect();
    AndroidIdentity {
        package: packages.first().cloned(),
        packages,
        user_id: uid / 100_000,
        app_id: uid % 100_000,
        kind,
    }
}

fn android_app(name: &str, uid: u32, id: AndroidIdentity) -> Arc<App> {
    let mut app = Arc::unwrap_or_clone(fixtures::app(name));
    (app.exe, app.cmdline, app.unit, app.user, app.uid, app.android) = (None, None, None, None, uid, Some(id));
    Arc::new(app)
}

#[test]
fn android_identities_round_trip_through_the_journal_into_the_report() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let tiktok = "com.zhiliaoapp.musically";
    let owner = android_app(tiktok, 10_123, identity(&[tiktok], 10_123, UidKind::App));
    // The same package for Android user 10 (a work profile): same name, second identity.
    let work = android_app(tiktok, 1_010_123, identity(&[tiktok], 1_010_123, UidKind::App));
    let shared_pkgs = ["com.example.shared.a", "com.example.shared.b"];
    let shared = android_app("com.example.shared.a", 10_200, identity(&shared_pkgs, 10_200, UidKind::App));
    let sandbox = android_app("sdk", 20_123, identity(&[tiktok], 20_123, UidKind::SdkSandbox));
    let isolated = android_app("isolated", 90_007, identity(&[], 90_007, UidKind::Isolated));
    let linux = fixtures::app("curl");
    let apps = [&owner, &work, &shared, &sandbox, &isolated, &linux];
    for (cookie, app) in (1..).zip(apps) {
        let mut f = Flow::new(cookie, "192.0.2.1:443", at(T0 + 3600));
        w.append(&f.record(Close, at(T0 + 3601), 100 * cookie, 10 * cookie), app, Some(&us));
    }
    w.flush().expect("flush");

    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM apps"), 6);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM apps WHERE android_app_id IS NULL AND name = 'curl'"), 1);
    let packages: String = conn
        .query_row("SELECT android_packages FROM apps WHERE android_app_id = 10200", [], |r| r.get(0))
        .expect("shared row");
    assert_eq!(packages, "com.example.shared.a com.example.shared.b");
    let kinds: Vec<String> = conn
        .prepare(
            "SELECT android_kind FROM apps WHERE android_kind IS NOT NULL ORDER BY android_app_id, android_user_id",
        )
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(kinds, ["app", "app", "app", "sdk_sandbox", "isolated"]);

    let reader = JournalReader::open(w.path()).expect("reader");
    let week = TimeRange { since: at(T0), until: at(T0 + 7 * 86_400) };
    let by_name = reader.android_apps(week, None).expect("android apps");
    let expect_tiktok = vec![identity(&[tiktok], 10_123, UidKind::App), identity(&[tiktok], 1_010_123, UidKind::App)];
    assert_eq!(by_name.get(tiktok), Some(&expect_tiktok));
    assert_eq!(by_name.get("com.example.shared.a"), Some(&vec![identity(&shared_pkgs, 10_200, UidKind::App)]));
    assert_eq!(by_name.get("sdk"), Some(&vec![identity(&[tiktok], 20_123, UidKind::SdkSandbox)]));
    assert_eq!(by_name.get("isolated"), Some(&vec![identity(&[], 90_007, UidKind::Isolated)]));
    assert_eq!(by_name.get("curl"), None);
    assert_eq!(by_name.len(), 4);
    let later = TimeRange { since: at(T0 + 7 * 86_400), until: at(T0 + 14 * 86_400) };
    assert!(reader.android_apps(later, None).expect("later").is_empty(), "apps not seen in the range");
    assert_eq!(reader.android_apps(week, Some("sdk")).expect("one app").len(), 1);

    let zone = Zone::get("UTC").expect("zone");
    let report =
        Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W47", &zone).expect("week"))).expect("build");
    let mut out = Vec::new();
    report.render(Format::Json, &mut out).expect("render");
    let doc: Value = serde_json::from_slice(&out).expect("json");
    let app = |name: &str| {
        doc["apps"].as_array().expect("apps").iter().find(|a| a["app"] == name).cloned().expect("app in report")
    };
    let t = app(tiktok);
    assert_eq!(
        t["android"],
        json!({"package": tiktok, "packages": [tiktok], "user_id": 0, "app_id": 10123, "kind": "app",
               "others": [{"package": tiktok, "packages": [tiktok], "user_id": 10, "app_id": 10123, "kind": "app"}]})
    );
    // Exact bytes of both users' flows (cookies 1 and 2).
    assert_eq!((t["traffic"]["payload_tx"].as_u64(), t["traffic"]["payload_rx"].as_u64()), (Some(300), Some(30)));
    assert_eq!(
        app("com.example.shared.a")["android"],
        json!({"package": "com.example.shared.a", "packages": shared_pkgs, "user_id": 0, "app_id": 10200, "kind": "app"})
    );
    assert_eq!(app("sdk")["android"]["kind"], "sdk_sandbox");
    assert_eq!(
        app("isolated")["android"],
        json!({"package": null, "packages": [], "user_id": 0, "app_id": 90007, "kind": "isolated"})
    );
    assert!(app("curl").get("android").is_none(), "no android object off Android");

    // With evidence (`monitor verify`), each process names the package of its UID.
    let mut query = ReportQuery::new(Period::iso_week("2026-W47", &zone).expect("week"));
    query.evidence = true;
    let report = Report::build(&reader, &query).expect("build with evidence");
    let packages = |name: &str| -> Vec<(u32, Option<String>)> {
        let a = report.apps.iter().find(|a| a.app == name).expect("app");
        let mut list: Vec<_> =
            a.destinations.iter().flat_map(|d| d.processes.iter().map(|p| (p.uid, p.package.clone()))).collect();
        list.sort();
        list
    };
    assert_eq!(packages(tiktok), [(10_123, Some(tiktok.to_owned())), (1_010_123, Some(tiktok.to_owned()))]);
    assert_eq!(packages("isolated"), [(90_007, None)]);
    assert_eq!(packages("curl"), [(1000, None)]);
}

/// A kind this build does not know (a newer writer, an edited file) is a read error that names
/// it, not an app silently taken for a system UID.
#[test]
fn an_unknown_android_kind_is_a_read_error() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = android_app("vendor", 10_300, identity(&["com.example.vendor"], 10_300, UidKind::App));
    let mut f = Flow::new(1, "192.0.2.1:443", at(T0 + 3600));
    w.append(&f.record(Close, at(T0 + 3601), 100, 10), &app, None);
    w.flush().expect("flush");
    raw(w.path()).execute("UPDATE apps SET android_kind = 'vendor_partition'", []).expect("edit the journal");

    let reader = JournalReader::open(w.path()).expect("reader");
    let week = TimeRange { since: at(T0), until: at(T0 + 7 * 86_400) };
    let e = reader.android_apps(week, None).expect_err("unknown kind");
    let chain = format!("{:#}", anyhow::Error::from(e));
    assert!(chain.contains("unknown variant `vendor_partition`"), "{chain}");
}
