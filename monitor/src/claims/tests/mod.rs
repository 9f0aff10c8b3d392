//! Claims: parsing (strict keys, country codes, impossible shares) and verdicts over hand-built
//! report models with known bytes.

use std::path::Path;

use jiff::Timestamp;

use super::*;
use crate::report::{
    AppReport, Attribution, Completeness, DatabaseAnswer, DestinationDetail, NewDestinations, PeriodInfo, PeriodKind,
    ProcessUse, Report, TimelineInfo, TimelineUnit, Traffic, Unknown,
};

fn parse(text: &str) -> Result<ClaimSet, Error> {
    ClaimSet::parse(text, Path::new("claims.toml"))
}

fn message(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The names in claims files, JSON verdicts and report summaries, each parsing back.
#[test]
fn direction_and_verdict_names_are_the_ones_in_use() {
    crate::variant::assert_names(&[(Direction::Upload, "upload"), (Direction::Both, "both")]);
    assert_eq!(Direction::Upload.to_string(), "upload", "messages use the same name");
    crate::variant::assert_names(&[
        (Verdict::Pass, "pass"),
        (Verdict::Inconclusive, "inconclusive"),
        (Verdict::Fail, "fail"),
    ]);
    let labels = [Verdict::Pass, Verdict::Inconclusive, Verdict::Fail].map(Verdict::label);
    assert_eq!(labels, ["PASS", "INCONCLUSIVE", "FAIL"], "tables and alerts");
}

#[test]
fn the_example_file_parses_and_documents_every_key() {
    let text = include_str!("../../../../config/claims.example.toml");
    let set = parse(text).unwrap();
    assert!(set.claims.len() >= 2);
    for key in [
        "name",
        "description",
        "apps",
        "groups",
        "exe",
        "units",
        "android_packages",
        "direction",
        "allowed_countries",
        "denied_countries",
        "allowed_asns",
        "denied_asns",
        "allowed_orgs",
        "denied_orgs",
        "allowed_hosts",
        "denied_hosts",
        "min_share",
        "percent",
        "countries",
        "asns",
        "orgs",
        "unknown_country_pct",
        "unknown_asn_pct",
        "unnamed_pct",
        "lost_events",
        "disputed_as_unknown",
        "no_traffic",
    ] {
        assert!(text.contains(&format!("{key} =")) || text.contains(&format!("{key} = ")), "undocumented: {key}");
    }
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err = parse("[[claims]]\nname = \"x\"\napps = [\"a\"]\nallowed_country = [\"US\"]\n").unwrap_err();
    assert!(matches!(err, Error::Parse { .. }));
    assert!(message(&err).contains("allowed_country"), "{}", message(&err));
    let err = parse("[[claims]]\nname = \"x\"\napps = [\"a\"]\n[claims.inconclusive]\nunknown_pct = 2\n").unwrap_err();
    assert!(message(&err).contains("unknown_pct"), "{}", message(&err));
    assert!(parse("[[claim]]\nname = \"x\"\n").is_err());
}

#[test]
fn bad_country_codes_are_errors() {
    for (code, why) in
        [("USA", "two letters"), ("U1", "two letters"), ("QQ", "not an assigned code"), ("", "two letters")]
    {
        let err =
            parse(&format!("[[claims]]\nname = \"x\"\napps = [\"a\"]\ndenied_countries = [\"{code}\"]\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("denied_countries") && text.contains(why) && text.contains("claim `x`"), "{text}");
    }
    let ok = parse("[[claims]]\nname = \"x\"\napps = [\"a\"]\nallowed_countries = [\"us\", \"XK\"]\n").unwrap();
    assert_eq!(ok.claims[0].allowed_countries, ["US", "XK"]);
}

#[test]
fn impossible_shares_and_contradictions_are_errors() {
    let base = "[[claims]]\nname = \"x\"\napps = [\"a\"]\n";
    for (extra, needle) in [
        ("min_share = { percent = 101, countries = [\"US\"] }", "impossible"),
        ("min_share = { percent = 0, countries = [\"US\"] }", "impossible"),
        ("min_share = { percent = -5, countries = [\"US\"] }", "impossible"),
        ("min_share = { percent = 50 }", "names no destination"),
        ("denied_countries = [\"US\"]\nmin_share = { percent = 50, countries = [\"US\"] }", "denied_countries"),
        ("allowed_countries = [\"DE\"]\nmin_share = { percent = 50, countries = [\"US\"] }", "not in allowed"),
        ("allowed_countries = [\"US\"]\ndenied_countries = [\"US\"]", "also in allowed"),
        ("allowed_asns = [1]\ndenied_asns = [1]", "also in allowed"),
        ("[claims.inconclusive]\nunknown_country_pct = 120", "between 0 and 100"),
    ] {
        let err = parse(&format!("{base}{extra}\n")).unwrap_err();
        assert!(err.to_string().contains(needle), "{extra}: {err}");
    }
    let err = parse("[[claims]]\nname = \"x\"\ndenied_countries = [\"CN\"]\n").unwrap_err();
    assert!(err.to_string().contains("select at least one app"), "{err}");
    let rule = "denied_countries = [\"CN\"]\n";
    let err = parse(&format!("{base}{rule}{base}{rule}")).unwrap_err();
    assert!(err.to_string().contains("used by two claims"), "{err}");
    let err = parse(&format!("{base}allowed_orgs = [\"Oracle[\"]\n")).unwrap_err();
    assert!(matches!(err, Error::Glob { key: "allowed_orgs", .. }), "{err}");
}

/// A gate that checks nothing must not pass: a file without claims, or a claim with selectors
/// but no rule, is refused when loaded (by `monitor verify` and the daemon alike).
#[test]
fn claims_that_check_nothing_are_refused() {
    for text in ["", "# nothing yet\n", "claims = []\n"] {
        let err = parse(text).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{text:?}: {err}");
        assert_eq!(
            err.to_string(),
            "the claims file `claims.toml` has no claims: add a `[[claims]]` entry (keys in \
             config/claims.example.toml)"
        );
    }
    for text in [
        "[[claims]]\nname = \"a\"\napps = [\"x\"]\n",
        "[[claims]]\nname = \"a\"\nexe = [\"/opt/*\"]\ndirection = \"upload\"\ndescription = \"d\"\n",
        "[[claims]]\nname = \"a\"\nunits = [\"x.service\"]\nallowed_countries = []\ndenied_hosts = []\n",
    ] {
        let err = parse(text).unwrap_err();
        assert!(matches!(&err, Error::NoRule { claim } if claim == "a"), "{text:?}: {err}");
        assert_eq!(
            err.to_string(),
            "claim `a` has no rule to check: add one of allowed_countries, denied_countries, allowed_asns, \
             denied_asns, allowed_orgs, denied_orgs, allowed_hosts, denied_hosts, min_share"
        );
    }
    // The other claims of a file do not excuse one without a rule.
    let ok = "[[claims]]\nname = \"b\"\napps = [\"x\"]\ndenied_countries = [\"CN\"]\n";
    let err = parse(&format!("{ok}[[claims]]\nname = \"a\"\napps = [\"x\"]\n")).unwrap_err();
    assert!(matches!(&err, Error::NoRule { claim } if claim == "a"), "{err}");
    // Each rule alone is enough, and the message names exactly these.
    let rules = [
        "allowed_countries = [\"US\"]",
        "denied_countries = [\"CN\"]",
        "allowed_asns = [1]",
        "denied_asns = [1]",
        "allowed_orgs = [\"O*\"]",
        "denied_orgs = [\"O*\"]",
        "allowed_hosts = [\"*.se\"]",
        "denied_hosts = [\"*.cn\"]",
        "min_share = { percent = 50, countries = [\"US\"] }",
    ];
    let keys: Vec<&str> = rules.iter().filter_map(|r| r.split(' ').next()).collect();
    assert_eq!(keys, RULE_KEYS);
    for rule in rules {
        let set = parse(&format!("[[claims]]\nname = \"a\"\napps = [\"x\"]\n{rule}\n")).unwrap();
        assert_eq!(set.claims.len(), 1, "{rule}");
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn process(exe: &str, pid: u32, tx: u64, rx: u64) -> ProcessUse {
    ProcessUse {
        exe: Some(exe.into()),
        pid,
        uid: 1000,
        user: Some("alice".into()),
        unit: None,
        package: None,
        payload_tx: tx,
        payload_rx: rx,
        wire_tx: tx + 52,
        wire_rx: rx + 52,
        flows: 1,
    }
}

fn dest(ip: &str, country: Option<&str>, asn: Option<(u32, &str)>, procs: Vec<ProcessUse>) -> DestinationDetail {
    let db = |t: &str| {
        Some(DatabaseAnswer { database_type: t.into(), build_epoch: 1_700_000_000, build_date: "2023-11-14".into() })
    };
    DestinationDetail {
        ip: ip.into(),
        scope: if ip.starts_with("10.") { "private".into() } else { "public".into() },
        hostname: None,
        registrable_domain: None,
        name_source: None,
        country: country.map(Into::into),
        country_disputed: false,
        asn: asn.map(|a| a.0),
        as_org: asn.map(|a| a.1.into()),
        country_db: db("GeoIP2-Country"),
        asn_db: db("GeoLite2-ASN"),
        payload_tx: procs.iter().map(|p| p.payload_tx).sum(),
        payload_rx: procs.iter().map(|p| p.payload_rx).sum(),
        wire_tx: procs.iter().map(|p| p.wire_tx).sum(),
        wire_rx: procs.iter().map(|p| p.wire_rx).sum(),
        flows: procs.len() as u64,
        first_seen: ts("2026-11-17T10:00:00Z"),
        last_seen: ts("2026-11-17T11:00:00Z"),
        processes: procs,
    }
}

fn app(name: &str, destinations: Vec<DestinationDetail>) -> AppReport {
    AppReport {
        app: name.into(),
        traffic: Traffic::default(),
        by_host: Vec::new(),
        flows: 0,
        incomplete_flows: 0,
        by_country: Vec::new(),
        by_asn: Vec::new(),
        unknown: Unknown::default(),
        top_endpoints: Vec::new(),
        endpoints_total: 0,
        new_destinations: NewDestinations {
            compared_with: String::new(),
            countries: Vec::new(),
            asns: Vec::new(),
            endpoints: 0,
            endpoints_compared: true,
        },
        payload_sources: Vec::new(),
        destinations,
        timeline: Vec::new(),
        consensus: None,
        plausibility: None,
        android: None,
    }
}

fn report(apps: Vec<AppReport>, events_lost: u64) -> Report {
    let period = PeriodInfo {
        label: "2026-W47".into(),
        kind: PeriodKind::IsoWeek,
        time_zone: "UTC".into(),
        since: ts("2026-11-16T00:00:00Z"),
        until: ts("2026-11-23T00:00:00Z"),
        since_local: "2026-11-16T00:00:00+00:00".into(),
        until_local: "2026-11-23T00:00:00+00:00".into(),
        seconds: 604_800,
    };
    Report {
        schema: crate::report::SCHEMA,
        previous_period: period.clone(),
        period,
        app_filter: None,
        generated_at: None,
        totals: Traffic::default(),
        apps,
        completeness: Completeness {
            stats_rows: 1,
            runs: 1,
            restarts: 0,
            unwatched_ms: 0,
            events_submitted: 100,
            events_lost,
            decode_errors: 0,
            storage_failures: 0,
            unattributed_bytes: 0,
            unattributed_packets: 0,
            attributed_wire_bytes: 0,
            unattributed_share_pct: None,
            incomplete_flows: 0,
            journal_dropped_records: 0,
            journal_dropped_payload_bytes: 0,
            endpoints_purged_before: None,
            data_since: None,
            data_until: None,
            notes: Vec::new(),
            degradations: None,
        },
        databases: Vec::new(),
        attribution: Attribution { text: crate::report::ATTRIBUTION, applies: false },
        timeline: TimelineInfo { unit: TimelineUnit::Day, complete: true },
        services: Default::default(),
        session: None,
        claims: Vec::new(),
        emulator_join: None,
        hosts: None,
    }
}

/// app-a: 300,000 up / 20,000 down to SE (AS29518), 100,000 / 50,000 to AU (AS1221), 5,000 / 0
/// to a private address; app-b: 1,000 up to an address of unknown country.
fn sample(events_lost: u64) -> Report {
    report(
        vec![
            app(
                "app-a",
                vec![
                    dest(
                        "89.160.20.112",
                        Some("SE"),
                        Some((29518, "Bredband2 AB")),
                        vec![process("/usr/bin/a", 7, 300_000, 20_000)],
                    ),
                    dest(
                        "1.128.0.1",
                        Some("AU"),
                        Some((1221, "Telstra Pty Ltd")),
                        vec![process("/usr/bin/a", 7, 100_000, 50_000)],
                    ),
                    dest("10.0.0.9", None, None, vec![process("/usr/bin/a", 7, 5_000, 0)]),
                ],
            ),
            app("app-b", vec![dest("203.0.113.200", None, None, vec![process("/opt/b/bin/b", 9, 1_000, 0)])]),
        ],
        events_lost,
    )
}

fn verdicts(claims: &str, report: &Report) -> Verdicts {
    evaluate(&parse(claims).unwrap(), report, None)
}

#[test]
fn a_claim_that_holds_passes_with_exact_bytes() {
    let v = verdicts(
        "[[claims]]\nname = \"eu-only\"\napps = [\"app-a\"]\ndirection = \"upload\"\ndenied_countries = [\"CN\", \"US\"]\n",
        &sample(0),
    );
    let c = &v.claims[0];
    assert_eq!(c.verdict, Verdict::Pass, "{c:#?}");
    assert_eq!(c.bytes.total, 405_000);
    assert_eq!(c.bytes.satisfying, 400_000);
    assert_eq!(c.bytes.exempt, 5_000);
    assert_eq!(c.bytes.violating, 0);
    assert!(c.violations.is_empty());
    assert_eq!(v.summary, Summary { pass: 1, fail: 0, inconclusive: 0 });
}

#[test]
fn a_violated_claim_fails_with_exact_bytes_and_evidence() {
    let v =
        verdicts("[[claims]]\nname = \"se-only\"\nexe = [\"/usr/bin/*\"]\nallowed_countries = [\"SE\"]\n", &sample(0));
    let c = &v.claims[0];
    assert_eq!(c.verdict, Verdict::Fail);
    assert_eq!((c.bytes.satisfying, c.bytes.violating), (320_000, 150_000));
    assert_eq!(c.violations.len(), 1);
    let x = &c.violations[0];
    assert_eq!((x.app.as_str(), x.rule, x.bytes), ("app-a", "allowed_countries", 150_000));
    assert_eq!(x.destination.ip, "1.128.0.1");
    assert_eq!((x.destination.payload_tx, x.destination.payload_rx), (100_000, 50_000));
    assert_eq!(x.destination.asn, Some(1221));
    assert_eq!(x.destination.country_db.as_ref().unwrap().database_type, "GeoIP2-Country");
    assert_eq!(x.destination.processes[0].pid, 7);

    let v =
        verdicts("[[claims]]\nname = \"no-telstra\"\napps = [\"app-a\"]\ndenied_orgs = [\"telstra*\"]\n", &sample(0));
    assert_eq!(v.claims[0].violations[0].rule, "denied_orgs");
    assert_eq!(v.claims[0].bytes.violating, 150_000);
}

#[test]
fn min_share_fails_below_the_share_and_passes_above() {
    let claim = |p: u32| {
        format!(
            "[[claims]]\nname = \"s\"\napps = [\"app-a\"]\ndirection = \"upload\"\nmin_share = {{ percent = {p}, countries = [\"SE\"] }}\n"
        )
    };
    // 300,000 of 400,000 judged upload bytes: 75 %.
    let pass = verdicts(&claim(75), &sample(0));
    assert_eq!(pass.claims[0].verdict, Verdict::Pass);
    assert_eq!(pass.claims[0].min_share_pct, Some(75.0));
    let fail = verdicts(&claim(76), &sample(0));
    let c = &fail.claims[0];
    assert_eq!(c.verdict, Verdict::Fail);
    assert_eq!((c.bytes.violating, c.violations[0].rule), (100_000, "min_share"));
}

#[test]
fn unknowns_and_losses_past_the_thresholds_are_inconclusive() {
    let claim = "[[claims]]\nname = \"b\"\napps = [\"app-b\"]\ndenied_countries = [\"CN\"]\n";
    let c = &verdicts(claim, &sample(0)).claims[0];
    assert_eq!(c.verdict, Verdict::Inconclusive);
    assert_eq!((c.bytes.unknown_country, c.unknown_country_pct), (1_000, 100.0));
    assert!(c.reasons[0].contains("unknown country"), "{:?}", c.reasons);
    let tolerant = format!("{claim}[claims.inconclusive]\nunknown_country_pct = 100\n");
    assert_eq!(verdicts(&tolerant, &sample(0)).claims[0].verdict, Verdict::Pass);
    // A hostname rule without names: unnamed bytes.
    let c = &verdicts("[[claims]]\nname = \"h\"\napps = [\"app-a\"]\nallowed_hosts = [\"*.example.se\"]\n", &sample(0))
        .claims[0];
    assert_eq!((c.verdict, c.bytes.unnamed), (Verdict::Inconclusive, 470_000));
    // Lost events.
    let lossy = "[[claims]]\nname = \"a\"\napps = [\"app-a\"]\ndenied_countries = [\"CN\"]\n";
    let c = &verdicts(lossy, &sample(3)).claims[0];
    assert_eq!(c.verdict, Verdict::Inconclusive);
    assert!(c.reasons.iter().any(|r| r.contains("3 events were lost")), "{:?}", c.reasons);
    let c = &verdicts(&format!("{lossy}[claims.inconclusive]\nlost_events = 3\n"), &sample(3)).claims[0];
    assert_eq!(c.verdict, Verdict::Pass);
    // No traffic at all.
    let c =
        &verdicts("[[claims]]\nname = \"z\"\napps = [\"nobody\"]\ndenied_countries = [\"CN\"]\n", &sample(0)).claims[0];
    assert_eq!((c.verdict, c.bytes.total), (Verdict::Inconclusive, 0));
}

/// A host name another process's DNS answer gave the address (`dns_host`) is no fact about the
/// name this app used: host rules take it as unknown (an adversarial pass: any process could make
/// another app's traffic pass `allowed_hosts` by resolving a matching name to its address).
#[test]
fn another_process_dns_answer_does_not_satisfy_a_host_rule() {
    let named = |source: &str| {
        let mut r = sample(0);
        for d in r.apps.iter_mut().flat_map(|a| a.destinations.iter_mut()) {
            d.hostname = Some("evil.trusted.com".into());
            d.registrable_domain = Some("trusted.com".into());
            d.name_source = Some(source.into());
        }
        r
    };
    let claim = "[[claims]]\nname = \"h\"\napps = [\"app-a\"]\nallowed_hosts = [\"*.trusted.com\"]\n";
    let own = &verdicts(claim, &named("dns")).claims[0];
    assert_eq!((own.verdict, own.bytes.unnamed), (Verdict::Pass, 0), "{own:#?}");
    let other = &verdicts(claim, &named("dns_host")).claims[0];
    assert_eq!((other.verdict, other.bytes.unnamed), (Verdict::Inconclusive, 470_000), "{other:#?}");
    let denied = "[[claims]]\nname = \"d\"\napps = [\"app-a\"]\ndenied_hosts = [\"*.trusted.com\"]\n";
    assert_eq!(verdicts(denied, &named("dns")).claims[0].verdict, Verdict::Fail);
    assert_ne!(verdicts(denied, &named("dns_host")).claims[0].verdict, Verdict::Fail);
}

/// A connection to a forbidden destination that moved no payload (a handshake only) is not a
/// violation (claims judge payload) but is said (an adversarial pass: nothing in the verdict
/// showed it).
#[test]
fn a_connection_without_payload_to_a_forbidden_destination_is_said_not_failed() {
    let mut r = sample(0);
    let mut handshake = process("/usr/bin/a", 11, 0, 0);
    handshake.wire_tx = 216;
    r.apps[0].destinations.push(dest("175.16.199.1", Some("CN"), Some((4837, "China Unicom")), vec![handshake]));
    let c = &verdicts("[[claims]]\nname = \"x\"\napps = [\"app-a\"]\ndenied_countries = [\"CN\"]\n", &r).claims[0];
    assert_eq!((c.verdict, c.bytes.violating), (Verdict::Pass, 0), "{c:#?}");
    assert!(
        c.reasons.iter().any(|x| x.starts_with("1 connection(s) to 1 destination(s) this claim forbids moved no")),
        "{:?}",
        c.reasons
    );
}

#[test]
fn disputed_countries_count_as_unknown_when_configured() {
    let mut r = sample(0);
    r.apps[0].destinations[1].country_disputed = true;
    let claim = "[[claims]]\nname = \"d\"\napps = [\"app-a\"]\ndenied_countries = [\"CN\"]\n";
    let c = &verdicts(claim, &r).claims[0];
    assert_eq!((c.verdict, c.bytes.unknown_country), (Verdict::Inconclusive, 150_000));
    let c = &verdicts(&format!("{claim}[claims.inconclusive]\ndisputed_as_unknown = false\n"), &r).claims[0];
    assert_eq!(c.verdict, Verdict::Pass);
}

#[test]
fn renderings_carry_the_verdicts_and_escape_foreign_text() {
    let v = verdicts("[[claims]]\nname = \"se|only\"\napps = [\"app-a\"]\nallowed_countries = [\"SE\"]\n", &sample(0));
    let mut json = Vec::new();
    v.render(crate::report::Format::Json, &mut json).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["schema"], VERDICTS_SCHEMA);
    assert_eq!(doc["claims"][0]["verdict"], "fail");
    assert_eq!(doc["claims"][0]["violations"][0]["destination"]["ip"], "1.128.0.1");
    let mut md = Vec::new();
    v.render(crate::report::Format::Markdown, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("FAIL") && md.contains("1\\.128.0.1") && md.contains("150,000"), "{md}");
    assert!(!md.contains("se|only"), "a pipe in a claim name must not open a cell:\n{md}");
    let mut table = Vec::new();
    v.render(crate::report::Format::Table, &mut table).unwrap();
    assert!(String::from_utf8(table).unwrap().contains("FAIL"));
    // An app name with a comma stays one name of the claim's list (an adversarial re-check).
    let mut v = v;
    v.claims[0].apps = vec!["q\"x,y".into(), "app-a".into()];
    for format in [crate::report::Format::Table, crate::report::Format::Markdown] {
        let mut out = Vec::new();
        v.render(format, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("\"q\"\"x,y\""), "{format:?}: {out}");
    }
}

mod live;

/// A process whose executable is unknown (it ended before /proc was read: named by the kernel's
/// 15-character name) may be the one a claim selects by executable: its traffic to a forbidden
/// destination makes the claim inconclusive, not a pass (it passed: found by an adversarial
/// pass). Its traffic to allowed destinations changes nothing, and a claim by app name is not
/// affected (the name is known).
#[test]
fn unidentified_processes_that_break_an_exe_unit_or_group_claim_make_it_inconclusive() {
    let mut r = sample(0);
    let mut gone = process("", 11, 508, 0);
    gone.exe = None;
    r.apps.push(app(
        "appdelta",
        vec![dest("114.114.114.114", Some("CN"), Some((21_859, "Zenlayer Inc")), vec![gone.clone()])],
    ));
    let by_exe = "[[claims]]\nname = \"x\"\nexe = [\"/usr/bin/*\"]\ndenied_countries = [\"CN\"]\n";
    let c = &verdicts(by_exe, &r).claims[0];
    assert_eq!(c.verdict, Verdict::Inconclusive, "{c:#?}");
    assert_eq!((c.bytes.unidentified_violating, c.bytes.violating, c.bytes.total), (508, 0, 475_000));
    assert!(
        c.reasons.iter().any(|x| x.contains("508 both bytes of processes whose executable is unknown")),
        "{:?}",
        c.reasons
    );
    // By unit too (a gone process's unit is unknown as well).
    let by_unit = "[[claims]]\nname = \"u\"\nunits = [\"a.service\"]\ndenied_countries = [\"CN\"]\n";
    assert_eq!(verdicts(by_unit, &r).claims[0].verdict, Verdict::Inconclusive);
    // By `[[apps]]` group: the group's rules may name the executable (an adversarial pass: a
    // group claim passed).
    let by_group = "[[claims]]\nname = \"g\"\ngroups = [\"app-a\"]\ndenied_countries = [\"CN\"]\n";
    assert_eq!(verdicts(by_group, &r).claims[0].verdict, Verdict::Inconclusive);
    // By app name: known, not affected.
    let by_name = "[[claims]]\nname = \"n\"\napps = [\"app-a\"]\ndenied_countries = [\"CN\"]\n";
    assert_eq!(verdicts(by_name, &r).claims[0].verdict, Verdict::Pass);
    // Unless the name is longer than the kernel's 15 bytes and the gone process's app is its first
    // 15 (an adversarial pass: such a claim passed while the app's short-lived processes sent to
    // a denied country).
    let long =
        "[[claims]]\nname = \"l\"\napps = [\"app-a\", \"appdelta-with-a-long-name\"]\ndenied_countries = [\"CN\"]\n";
    assert_eq!(verdicts(long, &r).claims[0].verdict, Verdict::Pass, "appdelta is not its first 15 bytes");
    r.apps.last_mut().unwrap().app = "appdelta-with-a".into();
    let c = &verdicts(long, &r).claims[0];
    assert_eq!((c.verdict, c.bytes.unidentified_violating), (Verdict::Inconclusive, 508), "{c:#?}");
    // A name cut inside a UTF-8 character: the kernel's 15 bytes, written as the tracker writes
    // them.
    let cut = "[[claims]]\nname = \"u\"\napps = [\"app-a\", \"appdelta-with-ö-x\"]\ndenied_countries = [\"CN\"]\n";
    assert_eq!("appdelta-with-ö-x".as_bytes().get(14), Some(&0xc3), "ö starts at byte 14");
    r.apps.last_mut().unwrap().app = "appdelta-with-\\xc3".into();
    assert_eq!(verdicts(cut, &r).claims[0].verdict, Verdict::Inconclusive);
    r.apps.last_mut().unwrap().app = "appdelta".into();
    // To an allowed destination: still a pass.
    r.apps.last_mut().unwrap().destinations[0].country = Some("SE".into());
    let c = &verdicts(by_exe, &r).claims[0];
    assert_eq!((c.verdict, c.bytes.unidentified_violating), (Verdict::Pass, 0));
}

/// The configured claims file is read once, where the config is validated: every later use of
/// that file gets the claims validated then (a file changed in between is not judged unvalidated),
/// another file is read when asked for, and the daemon's reload reads the file again.
#[test]
fn the_configured_claims_file_is_read_once() {
    let dir = crate::journal::tests::tempdir();
    let file = dir.path().join("claims.toml");
    let first = "[[claims]]\nname = \"first\"\napps = [\"curl\"]\nallowed_countries = [\"US\"]\n";
    std::fs::write(&file, first).expect("write");
    let mut config = ClaimsConfig::default();
    config.file.clone_from(&file);
    config.keep_loaded().expect("valid");
    std::fs::write(&file, "not toml [").expect("rewrite");
    let kept = config.load(&file).expect("the claims read at validation");
    assert_eq!(kept.claims.first().map(|c| c.name.as_str()), Some("first"));
    assert!(config.read(&file).is_err(), "a reload reads the file as it is now");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, first.replace("first", "other")).expect("write");
    let set = config.load(&other).expect("another file is read");
    assert_eq!(set.claims.first().map(|c| c.name.as_str()), Some("other"));
}

/// Thresholds are compared with the unrounded share, and a sentence that compares a share with
/// a limit never rounds it onto the other side (an adversarial pass: 9.93257 % of unknown bytes passed a
/// 9.932 % threshold, compared as 9.93; a 49.996 % share failed a 50 % minimum as "only 50 %").
#[test]
fn shares_are_compared_and_said_unrounded() {
    let mut r = sample(0);
    r.apps.push(app(
        "app-c",
        vec![
            dest("89.160.20.112", Some("SE"), None, vec![process("/usr/bin/c", 21, 45_412, 0)]),
            dest("203.0.113.7", None, None, vec![process("/usr/bin/c", 21, 5_008, 0)]),
        ],
    ));
    let claim = |limit: &str| {
        format!(
            "[[claims]]\nname = \"c\"\napps = [\"app-c\"]\ndirection = \"upload\"\nallowed_countries = [\"SE\"]\n\
             [claims.inconclusive]\nunknown_country_pct = {limit}\n"
        )
    };
    let c = &verdicts(&claim("9.932"), &r).claims[0];
    assert_eq!(c.verdict, Verdict::Inconclusive, "{c:#?}");
    assert!(c.reasons.iter().any(|x| x.contains("9.933 % of the judged bytes")), "{:?}", c.reasons);
    assert_eq!(c.unknown_country_pct, 9.933, "the JSON figure as the sentence says it");
    assert_eq!(verdicts(&claim("9.933"), &r).claims[0].verdict, Verdict::Pass);

    r.apps.push(app(
        "app-d",
        vec![
            dest("81.2.69.142", Some("GB"), None, vec![process("/usr/bin/d", 22, 49_996, 0)]),
            dest("89.160.20.112", Some("SE"), None, vec![process("/usr/bin/d", 22, 50_004, 0)]),
        ],
    ));
    let share = "[[claims]]\nname = \"d\"\napps = [\"app-d\"]\ndirection = \"upload\"\n\
                 min_share = { percent = 50, countries = [\"GB\"] }\n";
    let c = &verdicts(share, &r).claims[0];
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.reasons.iter().any(|x| x.contains("only 49.996 % of the upload bytes")), "{:?}", c.reasons);
    assert_eq!(c.min_share_pct, Some(49.996));
}

/// A program run from memory has the exe `memfd:<name>`: a claim's pattern for paths does not
/// select it, whatever name it gave its memory file, and one for memory files does (as
/// `[[apps]]` rules; a review: `*/sbin/sshd` took a memfd named `usr/sbin/sshd`).
#[test]
fn a_claim_s_path_pattern_does_not_select_a_program_run_from_memory() {
    let set = parse(
        "[[claims]]\nname = \"paths\"\nexe = [\"*/sbin/sshd\"]\ndenied_countries = [\"CN\"]\n\
         [[claims]]\nname = \"memory\"\nexe = [\"memfd:*\"]\ndenied_countries = [\"CN\"]\n",
    )
    .unwrap();
    let [paths, memory] = [0, 1].map(|i| &set.claims[i]);
    assert!(paths.selects("sshd", Some("/usr/sbin/sshd"), None, None));
    assert!(!paths.selects("memfd:usr/sbin/sshd", Some("memfd:usr/sbin/sshd"), None, None));
    assert!(memory.selects("memfd:usr/sbin/sshd", Some("memfd:usr/sbin/sshd"), None, None));
    assert!(!memory.selects("sshd", Some("/usr/sbin/sshd"), None, None));
    // Journals written before: the exe read `/memfd:<name>`, the app `memfd:<name>`.
    assert!(!paths.selects("memfd:usr/sbin/sshd", Some("/memfd:usr/sbin/sshd"), None, None));
    assert!(memory.selects("memfd:usr/sbin/sshd", Some("/memfd:usr/sbin/sshd"), None, None));
    // A file on disk under a directory named `/memfd:` (its app is its file name) is a path.
    assert!(paths.selects("sshd", Some("/memfd:usr/sbin/sshd"), None, None));
}

/// Patterns that can never match a program run from memory, though they seem to, are named.
#[test]
fn memory_patterns_that_cannot_match_are_named() {
    use crate::identity::rules::memory_pattern_problem;
    for never in ["/memfd:*", "*memfd:*", "{memfd:*,/opt/x/*}"] {
        assert!(memory_pattern_problem(never).is_some(), "{never}");
    }
    for fine in ["memfd:*", "memfd:usr/sbin/sshd", "/usr/sbin/*", "*"] {
        assert!(memory_pattern_problem(fine).is_none(), "{fine}");
    }
}
