//! The HTTP endpoint: `GET /metrics` on its own thread (tiny_http), outside the pipeline. With a
//! token, a request without `Authorization: Bearer <token>` gets 401 (compared in constant time);
//! other paths get 404, other methods 405.

use std::{
    net::SocketAddr,
    sync::Arc,
    thread::{self, JoinHandle},
};

use log::{info, warn};
use tiny_http::{Header, Method, Request, Response};

use super::{Error, Metrics, MetricsConfig};

/// OpenMetrics text, as `prometheus-client` encodes it.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running endpoint; stopped by [`Server::stop`] (or when dropped with the process).
pub struct Server {
    http: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

/// An endpoint bound, not serving yet: the daemon binds it before it opens its journal, so a
/// bad token file or a port in use stops it before it writes anything.
pub struct Bound {
    http: Arc<tiny_http::Server>,
    token: Option<String>,
    addr: SocketAddr,
    listen: SocketAddr,
}

impl Server {
    /// [`Server::bind`], then [`Bound::serve`].
    ///
    /// # Errors
    /// As [`Server::bind`] and [`Bound::serve`].
    pub fn start(config: &MetricsConfig, metrics: Arc<Metrics>) -> Result<Self, Error> {
        Self::bind(config)?.serve(metrics)
    }

    /// Checks `config` (as the settings do: a config built in code cannot open a non-loopback
    /// endpoint without `allow_remote` either), reads the token and binds `config.listen`.
    ///
    /// # Errors
    /// What [`MetricsConfig::validate`] refuses, an unreadable or short token file, an address
    /// that cannot be bound.
    pub fn bind(config: &MetricsConfig) -> Result<Bound, Error> {
        config.validate()?;
        let token = config.token()?;
        let listen = config.listen;
        let http = tiny_http::Server::http(listen).map_err(|source| Error::Bind { listen, source })?;
        let http = Arc::new(http);
        let addr = http.server_addr().to_ip().unwrap_or(listen);
        Ok(Bound { http, token, addr, listen })
    }
}

impl Bound {
    /// Starts serving `metrics` on its own thread.
    ///
    /// # Errors
    /// [`Error::Bind`] when the thread cannot be started.
    pub fn serve(self, metrics: Arc<Metrics>) -> Result<Server, Error> {
        let Self { http, token, addr, listen } = self;
        let authenticated = token.is_some();
        let serving = Arc::clone(&http);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    respond(request, &metrics, token.as_deref());
                }
            })
            .map_err(|e| Error::Bind { listen, source: Box::new(e) })?;
        info!("metrics served at http://{addr}/metrics authentication={authenticated}");
        Ok(Server { http, thread: Some(thread), addr })
    }
}

impl Server {
    /// The address it listens on (the port chosen by the system for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes the request in progress and joins the thread.
    pub fn stop(mut self) {
        self.http.unblock();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("the metrics thread panicked");
        }
    }
}

fn authorized(request: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    request.headers().iter().filter(|h| h.field.equiv("Authorization")).any(|h| {
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        h.value.as_str().trim_start().split_once(' ').is_some_and(|(scheme, given)| {
            scheme.eq_ignore_ascii_case("bearer")
                && constant_time_eq::constant_time_eq(given.trim().as_bytes(), token.as_bytes())
        })
    })
}

fn respond(request: Request, metrics: &Metrics, token: Option<&str>) {
    let path = request.url().split('?').next().unwrap_or_default();
    let response = if path != "/metrics" {
        Response::from_string("not found: the metrics are at /metrics\n").with_status_code(404)
    } else if !matches!(request.method(), Method::Get | Method::Head) {
        Response::from_string("method not allowed\n").with_status_code(405)
    } else if !authorized(&request, token) {
        let challenge = "WWW-Authenticate: Bearer".parse::<Header>();
        let r = Response::from_string("unauthorized: send Authorization: Bearer <token>\n").with_status_code(401);
        match challenge {
            Ok(h) => r.with_header(h),
            Err(()) => r,
        }
    } else {
        match metrics.encode() {
            Ok(text) => {
                let r = Response::from_string(text);
                match format!("Content-Type: {CONTENT_TYPE}").parse::<Header>() {
                    Ok(h) => r.with_header(h),
                    Err(()) => r,
                }
            }
            Err(e) => Response::from_string(format!("cannot encode the metrics: {e}\n")).with_status_code(500),
        }
    };
    if let Err(e) = request.respond(response) {
        log::debug!("metrics response not delivered: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpStream,
    };

    use super::*;

    /// Status code and body of a raw HTTP/1.0 request to the server.
    fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split(' ').nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        (code, body)
    }

    #[test]
    fn token_is_required_when_set_and_accepted_when_right() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token-0123456789\n").unwrap();
        let config = MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:0".parse().unwrap(),
            token_file: Some(token),
            ..MetricsConfig::default()
        };
        let server = Server::start(&config, Arc::new(Metrics::new(&config, 0.0))).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        assert_eq!(get(addr, "/metrics", None).0, 401);
        assert_eq!(get(addr, "/metrics", Some("Bearer wrong-token-0123456789")).0, 401);
        assert_eq!(get(addr, "/metrics", Some("Basic czNjcmV0LXRva2Vu")).0, 401);
        let (code, body) = get(addr, "/metrics", Some("Bearer s3cret-token-0123456789"));
        assert_eq!(code, 200);
        assert!(body.contains("monitor_events_submitted_total 0") && body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(addr, "/other", Some("Bearer s3cret-token-0123456789")).0, 404);
        // The scheme's name in any case (RFC 9110); the token itself exactly.
        assert_eq!(get(addr, "/metrics", Some("bearer s3cret-token-0123456789")).0, 200);
        assert_eq!(get(addr, "/metrics", Some("BEARER  s3cret-token-0123456789")).0, 200);
        assert_eq!(get(addr, "/metrics", Some("Bearer S3CRET-token-0123456789")).0, 401);
        assert_eq!(get(addr, "/metrics", Some("Bearers3cret-token-0123456789")).0, 401);
        server.stop();
    }

    #[test]
    fn without_a_token_scrapes_are_open_and_a_busy_port_is_an_error() {
        let config =
            MetricsConfig { enabled: true, listen: "127.0.0.1:0".parse().unwrap(), ..MetricsConfig::default() };
        let server = Server::start(&config, Arc::new(Metrics::new(&config, 0.0))).unwrap();
        assert_eq!(get(server.local_addr(), "/metrics", None).0, 200);
        let busy = MetricsConfig { listen: server.local_addr(), ..config };
        let err = Server::start(&busy, Arc::new(Metrics::new(&busy, 0.0))).err().unwrap();
        assert!(err.to_string().contains("cannot listen for metrics on 127.0.0.1:"), "{err}");
        server.stop();
    }

    #[test]
    fn a_config_built_in_code_cannot_skip_the_loopback_check() {
        let open = MetricsConfig { enabled: true, listen: "0.0.0.0:0".parse().unwrap(), ..MetricsConfig::default() };
        let err = Server::start(&open, Arc::new(Metrics::new(&open, 0.0))).err().unwrap();
        assert!(matches!(err, Error::Remote { .. }), "{err}");
    }
}
