//! `monitor run`: attach and report flows until SIGINT/SIGTERM.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use log::{error, info, warn};
use monitor::{
    daemon::{self, AppJson, FlowOutput, Output},
    escape::log_value,
    privileges,
    settings::{OutputFormat, RawConfig, Settings},
};
use tokio::sync::{mpsc, watch};

use super::{args::RunArgs, exit};

/// A stop signal this long after the first one ends the monitor at once (the first one starts a
/// clean shutdown); signals closer together are one request delivered twice.
const SECOND_SIGNAL_AFTER: Duration = Duration::from_millis(500);

/// How often a clean shutdown that has not finished says so.
const STILL_STOPPING_EVERY: Duration = Duration::from_secs(10);

/// Runs the daemon.
pub fn execute(args: RunArgs, mut raw: RawConfig, source: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let RunArgs { json, output, cgroup, journal } = args;
    // The file as read, before the flags below: what a SIGHUP compares the file with.
    let file = source.clone().map(|path| (path, raw.clone()));
    if let Some(output) = output {
        raw.output.format = output;
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
    // Before anything is created or opened: without these the kernel refuses the programs.
    if let Err(missing) = privileges::check() {
        error!(
            "insufficient privileges: missing {} in the effective capability set. Run as root with \
             every capability (e.g. `sudo monitor run`), or grant the binary the five it needs \
             (`setcap cap_bpf,cap_net_admin,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep`; \
             config/monitor.service grants them).",
            missing.join(", ")
        );
        return Ok(ExitCode::from(exit::PRIVILEGES));
    }
    // Before the runtime's threads start (see the function).
    if !monitor::sys::tune_heap() {
        log::debug!("allocator settings not applied (not glibc, or glibc refused one)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        if let Some((path, started)) = file {
            reload::watch(path, started).context("failed to install the SIGHUP handler")?;
        }
        let (tx, rx) = daemon::output_channel();
        let printer = tokio::spawn(print(rx, settings.output));
        let result = daemon::run(&settings, tx, shutdown_signal()?).await;
        let _ = printer.await;
        result?;
        Ok(ExitCode::from(exit::OK))
    })
}

/// Completes on the first SIGINT (ctrlc) or SIGTERM; a second one, at least
/// [`SECOND_SIGNAL_AFTER`] later, exits at once. SIGHUP is left to the daemon (database reload).
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    static FIRST: OnceLock<Instant> = OnceLock::new();
    fn second_signal_exits(code: i32) -> bool {
        let first = *FIRST.get_or_init(Instant::now);
        // One stop can arrive twice at once: `timeout(1)` signals the child and then its whole
        // process group, which holds the child too. Only a later signal means "now".
        if first.elapsed() >= SECOND_SIGNAL_AFTER {
            warn!(
                "second stop signal: exiting at once; records not yet in the journal (and open flows' shutdown records) are lost"
            );
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
        tokio::spawn(still_stopping());
    })
}

/// While a clean shutdown takes longer than [`STILL_STOPPING_EVERY`]: says so, and what a
/// second signal would cost. A journal on a frozen (`fsfreeze`) or stalled file system blocks the
/// last writes until it thaws; without this the daemon looked hung.
async fn still_stopping() {
    let mut waited = Duration::ZERO;
    loop {
        tokio::time::sleep(STILL_STOPPING_EVERY).await;
        waited += STILL_STOPPING_EVERY;
        warn!(
            "still stopping after {} s: the last records are not yet in the journal (its file system may be \
             frozen, full or slow; the daemon waits for it); a second stop signal exits at once and loses them",
            waited.as_secs()
        );
    }
}

async fn print(mut rx: mpsc::Receiver<Vec<Output>>, format: OutputFormat) {
    // The sink hands on the outputs of each of its messages (the records of one event batch) as
    // one batch. JSON lines go out in blocks (one write per 64 KiB, not per line) and are flushed
    // after a batch when no other batch waits, so a reader sees each line as soon as a burst of
    // records ends.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stdout());
    let mut line = Vec::with_capacity(1024);
    let mut apps = AppJson::default();
    let mut stdout_ok = true;
    while let Some(batch) = rx.recv().await {
        for output in &batch {
            // A batch holds up to a thousand records: give the runtime's other tasks (the ring
            // buffer drainer, the tracker) their turn between lines, as one receive per line did.
            tokio::task::consume_budget().await;
            match format {
                OutputFormat::Json => {
                    if !stdout_ok {
                        break;
                    }
                    line.clear();
                    if let Err(e) = apps.line(&mut line, output) {
                        warn!("cannot encode output: {e}");
                        continue;
                    }
                    line.push(b'\n');
                    if let Err(e) = out.write_all(&line) {
                        warn!("cannot write to stdout ({e}); records are no longer printed (the journal keeps them)");
                        stdout_ok = false;
                    }
                }
                OutputFormat::Log => log_line(output),
                OutputFormat::None => {
                    if !matches!(output, Output::Flow(_)) {
                        log_line(output);
                    }
                }
            }
        }
        if matches!(format, OutputFormat::Json)
            && stdout_ok
            && rx.is_empty()
            && let Err(e) = out.flush()
        {
            warn!("cannot write to stdout ({e}); records are no longer printed (the journal keeps them)");
            stdout_ok = false;
        }
    }
    if stdout_ok && let Err(e) = out.flush() {
        warn!("cannot write to stdout ({e}); records are no longer printed (the journal keeps them)");
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
             unattributed_packets={} storage_failures={} released_uncounted={} sockets_created={} \
             sockets_released={}",
            s.kernel.events_submitted,
            s.events_received,
            s.kernel.events_lost,
            s.decode_errors,
            s.tracker.open_flows,
            s.tracker.closed_flows,
            s.kernel.unattributed_packets,
            s.kernel.storage_failures,
            s.kernel.released_uncounted,
            s.kernel.sockets_created,
            s.kernel.sockets_released,
        ),
    }
}

/// One log line per flow record; names from the process are escaped ([`log_value`]): one line,
/// no terminal control sequences, and no value that ends its `key=value` pair early.
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
        log_value(&f.app.name),
        r.owner.tgid,
        log_value(&r.owner.comm),
        r.owner.uid,
        r.payload.tx_bytes,
        r.payload.rx_bytes,
        r.wire.tx_bytes,
        r.wire.tx_packets,
        r.wire.rx_bytes,
        r.wire.rx_packets,
    )
}

mod reload;
#[cfg(test)]
mod tests;
