//! SIGHUP and the config file: the daemon reloads its databases and claims file (at the paths it
//! started with), nothing else. A config file edited since the start would look applied by a
//! `systemctl reload`; this says what changed and that a restart applies it.

use std::path::{Path, PathBuf};

use log::{info, warn};
use monitor::{
    errors::chain,
    escape::Terminal,
    settings::{RawConfig, Settings},
};

/// Watches SIGHUP beside the daemon's own handler; each one rereads `path` and compares it with
/// `started` (the file as the daemon started with it, before command-line flags).
pub(super) fn watch(path: PathBuf, started: RawConfig) -> std::io::Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let (path, started) = (path.clone(), started.clone());
            // It reads files (the config, the databases and claims file it names): off the runtime.
            let _ = tokio::task::spawn_blocking(move || compare(&path, &started)).await;
        }
    });
    Ok(())
}

fn compare(path: &Path, started: &RawConfig) {
    let shown = Terminal(&path.display().to_string()).to_string();
    match RawConfig::load(Some(path)) {
        Err(e) => warn!(
            "SIGHUP: the config file {shown} cannot be read now ({}); the daemon keeps the config it started with",
            chain(&e)
        ),
        Ok((now, _)) => {
            let keys = changed_keys(started, &now);
            let valid = Settings::resolve(now, Some(path.to_path_buf())).and_then(|s| s.check_run_files().map(|()| s));
            if keys.is_empty() {
                info!("SIGHUP: the config file {shown} is unchanged");
            } else if let Err(e) = valid {
                warn!(
                    "SIGHUP: the config file {shown} changed since the daemon started ({}) and is not valid now: {}; a \
                     restart would refuse it (exit 2); the daemon keeps the config it started with",
                    Terminal(&keys.join(", ")),
                    chain(&e)
                );
            } else {
                warn!(
                    "SIGHUP: the config file {shown} changed since the daemon started ({}): SIGHUP reloads only the \
                     geolocation databases and the claims file, at the paths the daemon started with; restart the \
                     daemon to apply the changed config",
                    Terminal(&keys.join(", "))
                );
            }
        }
    }
}

/// The dotted keys whose values differ between `a` and `b` (tables compared key by key; a
/// whole array as one value).
pub(super) fn changed_keys(a: &RawConfig, b: &RawConfig) -> Vec<String> {
    if a == b {
        return Vec::new();
    }
    let (Ok(a), Ok(b)) = (toml::Value::try_from(a), toml::Value::try_from(b)) else {
        return vec!["(the configuration)".into()];
    };
    let mut keys = Vec::new();
    diff("", &a, &b, &mut keys);
    keys
}

fn diff(prefix: &str, a: &toml::Value, b: &toml::Value, keys: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let names: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for name in names {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                match (x.get(name), y.get(name)) {
                    (Some(u), Some(v)) => diff(&key, u, v, keys),
                    _ => keys.push(key),
                }
            }
        }
        _ if a != b => keys.push(prefix.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_keys_are_named_by_their_dotted_path() {
        let parse = |t: &str| RawConfig::parse(t, Path::new("x.toml")).unwrap();
        let a = parse("[geo]\ncountry_db = \"/a.mmdb\"\n[claims]\nfile = \"/c1.toml\"\n");
        assert!(changed_keys(&a, &a).is_empty());
        let b = parse(
            "[geo]\ncountry_db = \"/b.mmdb\"\n[claims]\nfile = \"/c2.toml\"\n[journal]\nflush_interval_secs = 9\n",
        );
        assert_eq!(changed_keys(&a, &b), ["claims.file", "geo.country_db", "journal.flush_interval_secs"]);
        // A key written out with its default value changes nothing.
        assert!(changed_keys(&RawConfig::default(), &parse("[probe]\nupdate_interval_secs = 10\n")).is_empty());
    }
}
