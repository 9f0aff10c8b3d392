//! Connection churn: short exchanges as fast as the machine goes.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{EXCHANGE_BYTES, Proto, say, set_comm};

/// `bench-load server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    #[arg(long, value_enum)]
    proto: Proto,
    /// First address:port; `ports` consecutive ports are served.
    #[arg(long)]
    listen: SocketAddrV4,
    #[arg(long, default_value_t = 4)]
    ports: u16,
    /// Threads per port.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

/// `bench-load client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    #[arg(long, value_enum)]
    proto: Proto,
    /// Local address to bind (UDP) / connect from.
    #[arg(long)]
    local: Ipv4Addr,
    /// First server address:port (`ports` consecutive ports, used in turn).
    #[arg(long)]
    server: SocketAddrV4,
    #[arg(long, default_value_t = 4)]
    ports: u16,
    /// Exchanges in total.
    #[arg(long)]
    count: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    procs: usize,
    /// Threads per worker process (each runs its exchanges one after the other).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Ground-truth log prefix: worker `i` writes `<log>.<i>`.
    #[arg(long)]
    log: PathBuf,
}

/// `bench-load worker`.
#[derive(clap::Args)]
pub struct WorkerArgs {
    #[arg(long, value_enum)]
    proto: Proto,
    #[arg(long)]
    local: Ipv4Addr,
    #[arg(long)]
    server: SocketAddrV4,
    #[arg(long)]
    ports: u16,
    #[arg(long)]
    count: usize,
    #[arg(long)]
    threads: usize,
    #[arg(long)]
    log: PathBuf,
}

/// Serves until killed. Prints `{"pid":…}` once every port is bound.
pub fn server(args: &ServerArgs) -> anyhow::Result<()> {
    set_comm(c"bench-server");
    let mut handles = Vec::new();
    for i in 0..args.ports {
        let addr = SocketAddrV4::new(*args.listen.ip(), args.listen.port() + i);
        match args.proto {
            Proto::Tcp => {
                let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
                for _ in 0..args.threads {
                    let l = listener.try_clone()?;
                    handles.push(thread::spawn(move || {
                        while let Ok((s, _)) = l.accept() {
                            let _ = serve_tcp(s);
                        }
                    }));
                }
            }
            Proto::Udp => {
                let sock = UdpSocket::bind(addr).with_context(|| format!("cannot bind {addr}"))?;
                for _ in 0..args.threads {
                    let s = sock.try_clone()?;
                    handles.push(thread::spawn(move || {
                        let mut buf = [0u8; 2048];
                        while let Ok((n, peer)) = s.recv_from(&mut buf) {
                            let _ = s.send_to(&buf[..n], peer);
                        }
                    }));
                }
            }
        }
    }
    say(&format!("{{\"pid\":{}}}", std::process::id()))?;
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn serve_tcp(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = [0u8; EXCHANGE_BYTES];
    s.read_exact(&mut buf)?;
    s.write_all(&buf)?;
    // Wait for the client's close so the client closes first (its side keeps TIME_WAIT).
    let mut rest = [0u8; 64];
    while s.read(&mut rest)? > 0 {}
    Ok(())
}

/// Starts the workers, releases them together, waits, prints a JSON summary.
pub fn client(args: &ClientArgs) -> anyhow::Result<()> {
    set_comm(c"bench-load");
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    for i in 0..args.procs {
        let share = args.count / args.procs + usize::from(i < args.count % args.procs);
        let mut cmd = Command::new(&exe);
        cmd.args(["bench-load", "worker", "--proto", &format!("{:?}", args.proto).to_lowercase()])
            .args(["--local", &args.local.to_string(), "--server", &args.server.to_string()])
            .args(["--ports", &args.ports.to_string(), "--count", &share.to_string()])
            .args(["--threads", &args.threads.to_string()])
            .arg("--log")
            .arg(format!("{}.{i}", args.log.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("cannot start a worker")?;
        let mut out = BufReader::new(child.stdout.take().context("worker stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("worker {i} did not get ready: {line:?}");
        }
        workers.push((child, out));
    }
    let start = Instant::now();
    for (child, _) in &mut workers {
        if let Some(stdin) = child.stdin.as_mut() {
            writeln!(stdin, "go")?;
            stdin.flush()?;
        }
    }
    let (mut ok, mut failed, mut pids) = (0u64, 0u64, Vec::new());
    for (mut child, mut out) in workers {
        pids.push(child.id());
        let mut line = String::new();
        out.read_line(&mut line)?;
        let status = child.wait()?;
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("worker said {line:?} ({status})"))?;
        ok += v["ok"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "ok": ok, "failed": failed, "elapsed_s": elapsed, "rate": ok as f64 / elapsed, "pids": pids,
    });
    say(&summary.to_string())
}

/// One worker: `threads` threads, each running its share of exchanges back to back.
pub fn worker(args: &WorkerArgs) -> anyhow::Result<()> {
    set_comm(c"bench-load");
    let threads = args.threads.max(1);
    let go = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let share = args.count / threads + usize::from(t < args.count % threads);
        let (go, proto, local, server, ports) = (Arc::clone(&go), args.proto, args.local, args.server, args.ports);
        handles.push(thread::spawn(move || {
            let mut log = Vec::with_capacity(share);
            go.wait();
            for n in 0..share {
                let port = server.port() + u16::try_from((n + t) % usize::from(ports)).unwrap_or(0);
                let to = SocketAddrV4::new(*server.ip(), port);
                let r = match proto {
                    Proto::Tcp => exchange_tcp(to),
                    Proto::Udp => exchange_udp(local, to),
                };
                // Failed before a local port was known: logged with port 0.
                log.push(r.unwrap_or((0, port, 0, 0)));
            }
            log
        }));
    }
    say("ready")?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    go.wait();
    let pid = std::process::id();
    let mut out = BufWriter::new(File::create(&args.log)?);
    let (mut ok, mut failed) = (0u64, 0u64);
    for h in handles {
        for (local, remote, tx, rx) in h.join().map_err(|_| anyhow::anyhow!("worker thread panicked"))? {
            if tx == EXCHANGE_BYTES && rx == EXCHANGE_BYTES {
                ok += 1;
            } else {
                failed += 1;
            }
            writeln!(out, "{pid},{local},{remote},{tx},{rx}")?;
        }
    }
    out.flush()?;
    say(&format!("{{\"ok\":{ok},\"failed\":{failed}}}"))
}

/// (local port, remote port, bytes sent, bytes received).
type Exchange = (u16, u16, usize, usize);

fn exchange_tcp(to: SocketAddrV4) -> std::io::Result<Exchange> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(5))?;
    let local = s.local_addr()?.port();
    s.set_nodelay(true)?;
    let buf = [0x5au8; EXCHANGE_BYTES];
    let mut tx = 0;
    let mut rx = 0;
    if s.write_all(&buf).is_ok() {
        tx = EXCHANGE_BYTES;
        let mut back = [0u8; EXCHANGE_BYTES];
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        if s.read_exact(&mut back).is_ok() {
            rx = EXCHANGE_BYTES;
        }
    }
    Ok((local, to.port(), tx, rx))
}

fn exchange_udp(local: Ipv4Addr, to: SocketAddrV4) -> std::io::Result<Exchange> {
    let s = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
    s.connect(to)?;
    let port = s.local_addr()?.port();
    let buf = [0x5au8; EXCHANGE_BYTES];
    let tx = s.send(&buf).unwrap_or(0);
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut back = [0u8; 2048];
    let rx = s.recv(&mut back).unwrap_or(0);
    Ok((port, to.port(), tx, rx))
}
