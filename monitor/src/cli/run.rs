//! `monitor run`: attach and report flows until SIGINT/SIGTERM.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use log::{error, info, warn};
use monitor::{
    daemon::{self, OUTPUT_QUEUE, Output},
    escape::{self, Terminal},
    privileges,
    settings::{OutputFormat, RawConfig, Settings},
    daemon::FlowOutput,
};
use tokio::sync::{mpsc, watch};

use super::{args::RunArgs, exit};

/// Runs the daemon.
pub fn execute(args: RunArgs, mut raw: RawConfig, source: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let RunArgs { json, output, cgroup, journal } = args;
    match output.as_deref() {
        Some("json") => raw.output.format = OutputFormat::Json,
        Some("none") => raw.output.format = OutputFormat::None,
        Some(_) => raw.output.format = OutputFormat::Log,
        None => {}
    }
    if let Some(cgroup) = cgroup {
        raw.cgroup = cgroup;
    }
    if let Some(journal) = journal {
        raw.journal.path = journal;
    }
    if json {
        raw.output.format = OutputFormat::Json;
    }
    let settings = Settings::resolve(raw, source)?;
    if let Err(missing) = privileges::check() {
        error!(
            "insufficient privileges: missing {}. Run as root (e.g. `sudo monitor run`), or grant \
             the binary CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (`setcap cap_bpf,cap_net_admin,cap_perfmon+ep`).",
            missing.join(", ")
        );
        return Ok(ExitCode::from(exit::PRIVILEGES));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        let printer = tokio::spawn(print(rx, settings.output));
        let result = daemon::run(&settings, tx, shutdown_signal()?).await;
        let _ = printer.await;
        result?;
        Ok(ExitCode::from(exit::OK))
    })
}

/// Completes on the first SIGINT (ctrlc) or SIGTERM; a second one exits at once. SIGHUP is left
/// to the daemon (database reload).
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    static SIGNALLED: AtomicBool = AtomicBool::new(false);
    fn second_signal_exits(code: i32) -> bool {
        if SIGNALLED.swap(true, Ordering::SeqCst) {
            std::process::exit(code);
        }
        true
    }
    let (tx, mut rx) = watch::channel(false);
    let on_int = tx.clone();
    ctrlc::set_handler(move || {
        second_signal_exits(130);
        let _ = on_int.send(true);
    })
    .context("failed to install the SIGINT handler")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("failed to install the SIGTERM handler")?;
    tokio::spawn(async move {
        while term.recv().await.is_some() {
            second_signal_exits(143);
            let _ = tx.send(true);
        }
    });
    Ok(async move {
        let _ = rx.wait_for(|stop| *stop).await;
    })
}

async fn print(mut rx: mpsc::Receiver<Output>, format: OutputFormat) {
    // JSON lines go out in blocks (one write per 64 KiB, not per line) and are flushed whenever
    // the queue is empty, so a reader sees each line as soon as a burst of records ends.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout());
    let mut line = Vec::with_capacity(1024);
    let mut stdout_ok = true;
    while let Some(output) = rx.recv().await {
        match format {
            OutputFormat::Json => {
                if !stdout_ok {
                    continue;
                }
                line.clear();
                if let Err(e) = escape::json::to_writer(&mut line, &output) {
                    warn!("cannot encode output: {e}");
                    continue;
                }
                line.push(b'\n');
                let written = out.write_all(&line).and_then(|()| if rx.is_empty() { out.flush() } else { Ok(()) });
                if written.is_err() {
                    warn!("stdout closed; records are no longer printed");
                    stdout_ok = false;
                }
            }
            OutputFormat::Log => log_line(&output),
            OutputFormat::None => {
                if !matches!(output, Output::Flow(_)) {
                    log_line(&output);
                }
            }
        }
    }
    if stdout_ok && out.flush().is_err() {
        warn!("stdout closed; records are no longer printed");
    }
}

fn log_line(output: &Output) {
    match output {
        Output::Started { cgroup, degradations } => {
            info!("watching cgroup={} degradations={}", cgroup.display(), degradations.len());
        }
        Output::Flow(f) => info!("{}", describe(f)),
        Output::Stats(s) => info!(
            "stats events={} received={} lost={} decode_errors={} open_flows={} closed_flows={} \
             unattributed_packets={} storage_failures={}",
            s.kernel.events_submitted,
            s.events_received,
            s.kernel.events_lost,
            s.decode_errors,
            s.tracker.open_flows,
            s.tracker.closed_flows,
            s.kernel.unattributed_packets,
            s.kernel.storage_failures,
        ),
    }
}

/// One log line per flow record; names from the process are escaped ([`Terminal`]): one line,
/// no terminal control sequences.
fn describe(f: &FlowOutput) -> String {
    let r = &f.record;
    let addr = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "?".to_owned(), |a| a.to_string());
    let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    format!(
        "{} {} {} {} -> {} app={} pid={} comm={} uid={} payload tx={} rx={} wire tx={}B/{}p rx={}B/{}p",
        name(&r.event),
        name(&r.protocol),
        name(&r.direction),
        addr(r.local),
        addr(r.remote),
        Terminal(&f.app.name),
        r.owner.tgid,
        Terminal(&r.owner.comm),
        r.owner.uid,
        r.payload.tx_bytes,
        r.payload.rx_bytes,
        r.wire.tx_bytes,
        r.wire.tx_packets,
        r.wire.rx_bytes,
        r.wire.rx_packets,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use monitor::{
        identity::{App, AppSource},
        tracker::{
            FlowRecord,
            record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
        },
    };

    use super::*;

    const EVIL: &str = "\x1b]0;pwned\x07evil|app\n## injected\u{202e}\u{85}";
    const COMM: &str = "=HYPERLINK(\"x\")\x1b[2J";

    fn flow() -> FlowOutput {
        let t = jiff::Timestamp::from_second(1_794_805_200).unwrap();
        let record = FlowRecord {
            event: RecordKind::Close,
            cookie: 7,
            owner: Owner {
                tgid: 4242,
                pid: 4243,
                uid: 1000,
                gid: 1000,
                comm: COMM.into(),
                cgroup_id: 9,
                source: OwnerSource::SockCreate,
            },
            protocol: Protocol::Tcp,
            direction: Direction::Outbound,
            local: Some("10.0.0.2:50000".parse().unwrap()),
            remote: Some("203.0.113.10:443".parse().unwrap()),
            payload: Payload { tx_bytes: 1, rx_bytes: 2 },
            payload_source: PayloadSource::Syscall,
            wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
            delta_payload: Payload { tx_bytes: 1, rx_bytes: 2 },
            delta_wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
            first_seen: t,
            last_seen: t,
            closed: Some(t),
            complete: true,
        };
        let app = App {
            name: EVIL.into(),
            exe: None,
            cmdline: Some("$'\\x1b]0;pwned\\a'".into()),
            pid: 4242,
            start_time: 0,
            uid: 1000,
            user: Some("\u{202e}root".into()),
            unit: None,
            cgroup: None,
            container: None,
            source: AppSource::Kernel,
        };
        FlowOutput { record, app: Arc::new(app), destination: None }
    }

    #[test]
    fn flow_log_line_shows_hostile_app_and_comm_escaped_on_one_line() {
        assert_eq!(
            describe(&flow()),
            "close tcp outbound 10.0.0.2:50000 -> 203.0.113.10:443 app=\\x1b]0;pwned\\x07evil|app\\n## injected\\u{202e}\\u{85} \
             pid=4242 comm==HYPERLINK(\"x\")\\x1b[2J uid=1000 payload tx=1 rx=2 wire tx=41B/1p rx=42B/1p"
        );
    }

    #[test]
    fn json_line_has_no_raw_control_or_bidi_character() {
        let mut line = Vec::new();
        escape::json::to_writer(&mut line, &Output::Flow(Box::new(flow()))).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(!text.chars().any(escape::is_invisible), "{text:?}");
        assert!(text.contains(r#""name":"\u001b]0;pwned\u0007evil|app\n## injected\u202e\u0085""#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((v["app"]["name"].as_str(), v["owner"]["comm"].as_str()), (Some(EVIL), Some(COMM)));
        assert_eq!(v["app"]["user"], "\u{202e}root");
    }
}
