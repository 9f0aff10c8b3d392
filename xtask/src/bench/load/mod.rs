//! The load generator, `xtask bench-load <role>` (hidden; the harness runs the release xtask
//! binary in its namespaces and cgroup). Plain std: blocking sockets, one thread per concurrent
//! exchange, several processes. Every client logs its ground truth so the harness can check what
//! the monitor recorded: one CSV line per exchange, `pid,local_port,remote_port,tx,rx`.
//!
//! Exchange (both protocols): the client sends [`EXCHANGE_BYTES`], the server answers with as
//! many, the client closes.
//! - TCP: `connect`, write 1 KiB, read 1 KiB, `close` (the client closes first).
//! - UDP: a fresh socket per exchange: `bind(0)`, `connect`, send one 1 KiB datagram, receive the
//!   1 KiB reply (500 ms timeout: counted as failed), `close`. The server answers from one
//!   unconnected socket per port (`recvfrom`/`sendto`), so on its side every exchange is a new
//!   peer of that socket.

mod churn;
mod hold;

use std::{
    ffi::CStr,
    io::{self, BufRead as _, Write as _},
};

use anyhow::Context as _;
use nix::sys::{
    prctl,
    resource::{Resource, getrlimit, setrlimit},
};

/// Payload each way in one exchange.
pub const EXCHANGE_BYTES: usize = 1024;

/// `xtask bench-load` options.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    role: Role,
}

/// Transport of a churn run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP connections.
    Tcp,
    /// UDP request/response on fresh sockets.
    Udp,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Answers exchanges on `ports` consecutive ports from `listen`.
    Server(churn::ServerArgs),
    /// Runs `count` exchanges from `procs` worker processes, as fast as they go; prints a JSON summary.
    Client(churn::ClientArgs),
    /// One worker process of `client` (started by it).
    Worker(churn::WorkerArgs),
    /// Accepts connections and keeps them open until stdin closes.
    HoldServer(hold::ServerArgs),
    /// Opens `count` connections, exchanges 1 KiB each way on each, keeps them open until stdin closes.
    HoldClient(hold::ClientArgs),
}

/// Runs one role.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.role {
        Role::Server(a) => churn::server(a),
        Role::Client(a) => churn::client(a),
        Role::Worker(a) => churn::worker(a),
        Role::HoldServer(a) => hold::server(a),
        Role::HoldClient(a) => hold::client(a),
    }
}

/// Names the process (its `comm`, the first 15 bytes), so peers that show only names can be
/// checked. Best effort: an error leaves the inherited name.
fn set_comm(name: &CStr) {
    let _ = prctl::set_name(name);
}

/// Raises the open-file limit to `n`: both limits when allowed (CAP_SYS_RESOURCE), else the soft
/// limit up to the hard one. Returns the soft limit in force.
fn raise_nofile(n: u64) -> anyhow::Result<u64> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from).context("getrlimit")?;
    if setrlimit(Resource::RLIMIT_NOFILE, n, n.max(hard)).is_ok() {
        return Ok(n);
    }
    let soft = n.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(io::Error::from).context("cannot raise RLIMIT_NOFILE")?;
    Ok(soft)
}

/// Prints one line on stdout and flushes it (the harness reads these).
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Blocks until stdin reaches end of file (the harness closes it to stop a role).
fn wait_stdin_eof() {
    let mut line = String::new();
    let stdin = io::stdin();
    let mut lock = stdin.lock();
    while lock.read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
}
