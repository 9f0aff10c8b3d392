//! `[metrics]`: an OpenMetrics endpoint for Prometheus (off by default).
//!
//! Owns the registry ([`Metrics`], fed by the sink from the same records the journal gets, so
//! that counters equal the journal over any period both cover) and the HTTP server
//! ([`Server`], a thread of its own outside the pipeline: a slow scraper never stalls it).
//! Never labels addresses, ports or host names; apps and ASNs beyond the configured top N fold
//! into `other` (counted in `monitor_metrics_folded_total`). Counters start from 0 with every
//! process start (`monitor_process_start_time_seconds` changes), which `increase()` handles.

mod label;
mod registry;
mod server;

use std::{net::SocketAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use label::{Label, OwnedLabel};
pub use registry::{MAX_TOP, Metrics, OTHER};
pub use server::{Bound, Server};

/// The documented `[metrics]` section: every key with its default. Parses to
/// [`MetricsConfig::default`] (checked by a test); pasted into `config/monitor.toml`.
pub const CONFIG_DOC: &str = r#"[metrics]
# Serve Prometheus/OpenMetrics metrics over HTTP at http://<listen>/metrics.
enabled = false
# Address and port of the endpoint. Loopback only unless `allow_remote` is set.
listen = "127.0.0.1:9464"
# Allow a non-loopback `listen` address. Risk: the series name every app and the countries and
# networks it talks to; anyone who can reach the port can read them (set `token_file`, and
# firewall the port). The shipped unit also limits the service to localhost (IPAddressAllow=).
allow_remote = false
# File holding a bearer token (one line, at least 16 characters; keep it mode 0600). When set,
# scrapes without `Authorization: Bearer <token>` get 401. Unset: no authentication.
# token_file = "/etc/monitor/metrics.token"
# Apps with their own series (the first ones seen, 1 to 10000); later apps are counted under
# app="other" (and in monitor_metrics_folded_total{kind="app"}).
top_apps = 200
# Autonomous systems with their own series (the first ones seen, 1 to 10000); later ones fold
# into asn="other" (counted in monitor_metrics_folded_total{kind="asn"}).
top_asns = 500
"#;

/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;
/// Largest token file read.
const TOKEN_FILE_MAX_BYTES: u64 = 4096;

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether the endpoint runs.
    pub enabled: bool,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` is allowed.
    pub allow_remote: bool,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// Apps with their own series.
    pub top_apps: usize,
    /// ASNs with their own series.
    pub top_asns: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            // 9464: the port OpenTelemetry's Prometheus exporter uses; loopback: nothing leaves the host.
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_remote: false,
            token_file: None,
            // 200 apps × 50 countries × 2 directions: ~20,000 series, ~2 MiB (measured, BENCHMARKS.md).
            top_apps: 200,
            top_asns: 500,
        }
    }
}

/// Metrics errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without `allow_remote = true`.
    #[error(
        "metrics.listen = {listen} is not a loopback address; set `metrics.allow_remote = true` to expose the \
         endpoint (see config/monitor.toml for the risk)"
    )]
    Remote {
        /// The configured address.
        listen: SocketAddr,
    },
    /// A top-N of zero or above [`MAX_TOP`].
    #[error("metrics.{key} must be between 1 and {MAX_TOP}")]
    ZeroTop {
        /// The key.
        key: &'static str,
    },
    /// The token file cannot be read.
    #[error("cannot read the metrics token file `{}`", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::files::Error,
    },
    /// The token is too short.
    #[error("the metrics token in `{}` is shorter than {MIN_TOKEN_LEN} characters", path.display())]
    ShortToken {
        /// The file.
        path: PathBuf,
    },
    /// The endpoint cannot listen.
    #[error("cannot listen for metrics on {listen}")]
    Bind {
        /// The address.
        listen: SocketAddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl MetricsConfig {
    /// Checks what can be checked without touching the system.
    ///
    /// # Errors
    /// [`Error::Remote`] for a non-loopback address without `allow_remote`, [`Error::ZeroTop`].
    pub fn validate(&self) -> Result<(), Error> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(Error::Remote { listen: self.listen });
        }
        if !(1..=MAX_TOP).contains(&self.top_apps) {
            return Err(Error::ZeroTop { key: "top_apps" });
        }
        if !(1..=MAX_TOP).contains(&self.top_asns) {
            return Err(Error::ZeroTop { key: "top_asns" });
        }
        Ok(())
    }

    /// The bearer token, if a file is configured (trimmed).
    ///
    /// # Errors
    /// [`Error::Token`], [`Error::ShortToken`].
    pub fn token(&self) -> Result<Option<String>, Error> {
        let Some(path) = &self.token_file else { return Ok(None) };
        let text = crate::files::read_regular_to_string(path, TOKEN_FILE_MAX_BYTES)
            .map_err(|source| Error::Token { path: path.clone(), source })?;
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(Error::ShortToken { path: path.clone() });
        }
        Ok(Some(token.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_section_parses_to_the_defaults() {
        #[derive(Deserialize)]
        struct Doc {
            metrics: MetricsConfig,
        }
        let doc: Doc = toml::from_str(CONFIG_DOC).unwrap();
        assert_eq!(doc.metrics, MetricsConfig::default());
    }

    #[test]
    fn non_loopback_listen_needs_allow_remote() {
        let mut c = MetricsConfig { listen: "0.0.0.0:9464".parse().unwrap(), ..MetricsConfig::default() };
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("allow_remote"), "{err}");
        c.listen = "192.0.2.1:9464".parse().unwrap();
        assert!(c.validate().is_err());
        c.allow_remote = true;
        assert!(c.validate().is_ok());
        let v6 = MetricsConfig { listen: "[::1]:9464".parse().unwrap(), ..MetricsConfig::default() };
        assert!(v6.validate().is_ok());
        let any6 = MetricsConfig { listen: "[::]:9464".parse().unwrap(), ..MetricsConfig::default() };
        assert!(any6.validate().is_err());
    }

    #[test]
    fn token_file_must_hold_a_long_enough_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        let c = MetricsConfig { token_file: Some(path.clone()), ..MetricsConfig::default() };
        assert!(matches!(c.token(), Err(Error::ShortToken { .. })));
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(c.token().unwrap().as_deref(), Some("0123456789abcdef0123"));
        let missing = MetricsConfig { token_file: Some(dir.path().join("nope")), ..MetricsConfig::default() };
        assert!(matches!(missing.token(), Err(Error::Token { .. })));
    }
}
