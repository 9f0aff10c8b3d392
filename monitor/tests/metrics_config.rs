//! The shipped Prometheus rules and Grafana dashboard: `promtool check rules` accepts the rules
//! (skips loudly without promtool unless `MONITOR_REQUIRE_ROOT_TESTS=1`), and every series they
//! query is one the endpoint serves.
#![expect(clippy::unwrap_used, reason = "tests panic on failure (house style R16)")]

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use monitor::{
    enrich::{DbInfo, DbRef},
    metrics::{Metrics, MetricsConfig},
};

fn config_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config").join(name)
}

/// Metric families the endpoint serves (from the `# TYPE` lines of a real exposition).
fn served_families() -> BTreeSet<String> {
    let m = Metrics::new(&MetricsConfig { enabled: true, ..MetricsConfig::default() }, 0.0);
    let db = DbRef { database_type: "country ipvAll".into(), build_epoch: 1_780_000_000 };
    m.databases(&[DbInfo { role: "country".into(), path: "/x.mmdb".into(), db, age_days: 1 }], 1_780_086_400);
    let text = m.encode().unwrap();
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next().map(str::to_owned)).collect()
}

/// Every `monitor_*` series name in `text`, mapped to its family (suffixes dropped).
fn queried_families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("monitor_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_total", "_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(family.to_owned());
        rest = &tail[end..];
    }
    out
}

#[test]
fn promtool_accepts_the_alerting_rules_and_their_unit_tests() {
    let rules = config_file("prometheus-rules.yml");
    let test = "promtool_accepts_the_alerting_rules_and_their_unit_tests";
    let Some((ok, said)) = promtool(test, &["check".as_ref(), "rules".as_ref(), rules.as_os_str()]) else { return };
    assert!(ok, "promtool rejects the rules:\n{said}");
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
    // Alert behaviour: a denied country's first flow (a new series) fires; lost events fire.
    let tests = config_file("prometheus-rules.test.yml");
    let (ok, said) = promtool(test, &["test".as_ref(), "rules".as_ref(), tests.as_os_str()]).unwrap();
    assert!(ok && said.contains("SUCCESS"), "promtool test rules:\n{said}");
}

/// Runs promtool with `args`: whether it succeeded and what it printed. `None`, said on stderr,
/// when promtool is missing: only outside CI (`MONITOR_REQUIRE_ROOT_TESTS` makes it a failure).
#[expect(clippy::print_stderr, reason = "a test's skip notice")]
fn promtool(test: &str, args: &[&std::ffi::OsStr]) -> Option<(bool, String)> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            Some((out.status.success(), said))
        }
        Err(e) => {
            assert!(std::env::var_os("MONITOR_REQUIRE_ROOT_TESTS").is_none(), "promtool: {e}");
            eprintln!("skipping {test}: promtool: {e} (run `cargo xtask setup`)");
            None
        }
    }
}

#[test]
fn rules_and_dashboard_query_only_served_series() {
    let served = served_families();
    for name in ["prometheus-rules.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(config_file(name)).unwrap();
        let queried = queried_families(&text);
        assert!(queried.len() >= 5, "{name} queries {queried:?}");
        let unknown: Vec<&String> = queried.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{name} queries series the endpoint does not serve: {unknown:?}\nserved: {served:?}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config_file("grafana-dashboard.json")).unwrap()).unwrap();
    assert!(dashboard["panels"].as_array().unwrap().iter().all(|p| p["targets"][0]["expr"].is_string()));
}

/// The growth query of `monitor report --prometheus`, evaluated by promtool on known series: a
/// series that exists throughout (its whole growth), one that appears inside the period and lives
/// across several 5-minute steps (Prometheus refused the query: "vector cannot contain metrics
/// with the same labelset"), and a host whose daemon restarted with its new counter above the old
/// one's value at the step before (its growth was taken as the difference); the step at the
/// period's start is not counted. Found by an adversarial pass.
#[test]
fn the_fleet_growth_query_counts_new_series_and_restarts() {
    let x = "monitor_app_payload_bytes_total";
    let query = monitor::report::promql::growth_query(
        x,
        "monitor_process_start_time_seconds",
        "instance",
        ", country, direction",
        1800,
    );
    let dir = tempfile::tempdir().unwrap();
    let tests = dir.path().join("growth.test.yml");
    let series = |instance: &str, app: &str| {
        format!("{x}{{instance=\"{instance}\", app=\"{app}\", country=\"SE\", direction=\"tx\"}}")
    };
    let yaml = format!(
        "evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{whole}'
        values: '0+10x40'
      - series: '{new}'
        values: '_x12 100+10x28'
      - series: '{restarted}'
        values: '0+10x11 0+50x28'
      - series: 'monitor_process_start_time_seconds{{instance=\"lab-01\"}}'
        values: '100x40'
      - series: 'monitor_process_start_time_seconds{{instance=\"lab-02\"}}'
        values: '100x11 200x28'
    promql_expr_test:
      - expr: '{query}'
        eval_time: 35m
        exp_samples:
          - labels: '{{instance=\"lab-01\", app=\"whole\", country=\"SE\", direction=\"tx\"}}'
            value: 300
          - labels: '{{instance=\"lab-01\", app=\"new\", country=\"SE\", direction=\"tx\"}}'
            value: 330
          - labels: '{{instance=\"lab-02\", app=\"restarted\", country=\"SE\", direction=\"tx\"}}'
            value: 1200
",
        whole = series("lab-01", "whole"),
        new = series("lab-01", "new"),
        restarted = series("lab-02", "restarted"),
    );
    // The period is 5 to 35 min. 300: 50 to 350 (the step at 5 min, the growth of the 5 minutes
    // before the period, is not counted: Prometheus 2 counted it). 330: first seen at 100 (12
    // min), 330 at 35 min. 1200: 50 by the step at 10 min, 110 when the daemon restarted after 11
    // min (the 10 of its last step are lost, as documented), then 0 to 1,150.
    std::fs::write(&tests, yaml).unwrap();
    let test = "the_fleet_growth_query_counts_new_series_and_restarts";
    let Some((ok, said)) = promtool(test, &["test".as_ref(), "rules".as_ref(), tests.as_os_str()]) else { return };
    assert!(ok && said.contains("SUCCESS"), "promtool test rules:\n{said}\n{query}");
}
