//! Many sockets open at once: `count` TCP connections (2 × `count` sockets), each with one 1 KiB
//! exchange each way, held open until stdin closes.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
};

use anyhow::Context as _;

use super::{EXCHANGE_BYTES, raise_nofile, say, set_comm, wait_stdin_eof};

/// `bench-load hold-server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Open-file limit to ask for (sockets held + a margin; the hard limit caps it without
    /// CAP_SYS_RESOURCE, so the harness spreads connections over several processes).
    #[arg(long, default_value_t = 200_000)]
    nofile: u64,
}

/// `bench-load hold-client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    #[arg(long)]
    server: SocketAddr,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 200_000)]
    nofile: u64,
}

/// Accepts and holds connections; exits when stdin closes. Prints `{"pid":…}` once listening.
pub fn server(args: &ServerArgs) -> anyhow::Result<()> {
    set_comm(c"bench-server");
    raise_nofile(args.nofile)?;
    let listener = TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; EXCHANGE_BYTES];
            if s.read_exact(&mut buf).is_ok() && s.write_all(&buf).is_ok() {
                held.push(s);
            }
        }
    });
    say(&format!("{{\"pid\":{}}}", std::process::id()))?;
    wait_stdin_eof();
    Ok(())
}

/// Opens `count` connections one after the other, then holds them until stdin closes. Prints
/// `{"pid":…,"held":…,"failed":…}` once all are open.
pub fn client(args: &ClientArgs) -> anyhow::Result<()> {
    set_comm(c"bench-load");
    let limit = raise_nofile(args.nofile)?;
    anyhow::ensure!(
        (args.count as u64) + 64 <= limit,
        "{} connections need more descriptors than RLIMIT_NOFILE allows ({limit})",
        args.count
    );
    let mut held = Vec::with_capacity(args.count);
    let mut failed = 0u64;
    for _ in 0..args.count {
        let r = TcpStream::connect(args.server).and_then(|mut s| {
            let mut buf = [0x5au8; EXCHANGE_BYTES];
            s.write_all(&buf)?;
            s.read_exact(&mut buf)?;
            Ok(s)
        });
        match r {
            Ok(s) => held.push(s),
            Err(_) => failed += 1,
        }
    }
    say(&format!("{{\"pid\":{},\"held\":{},\"failed\":{failed}}}", std::process::id(), held.len()))?;
    wait_stdin_eof();
    drop(held);
    Ok(())
}
