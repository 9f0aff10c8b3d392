//! The pipeline on a replay, shared by the test binaries that run it without root: recorded
//! kernel events go through the real tracker, sink (identity, enrichment with the MaxMind test
//! databases, journal in a temporary directory, weekly export) and output, fed by [`Replay`], an
//! [`EventSource`] the test drives.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use jiff::Timestamp;
use monitor::{
    clock::Clock,
    daemon::{Batch, EventSource, FlowOutput, Output, Pipeline},
    probe::{self, Degradation},
    settings::{RawConfig, Settings},
    stats::{KernelStats, Stats},
};
use monitor_common::{
    AF_INET, IPPROTO_TCP, IPPROTO_UDP,
    event::{Event, EventKind, FLAG_RELEASED, FLAG_SNAPSHOT, FLAG_TCP_COUNTERS, TcpCounters, Tuple},
    sock::{ByteCounters, Owner as KOwner, OwnerSource as KSource},
};
use tokio::sync::{mpsc, oneshot, watch};

pub const SEC: u64 = 1_000_000_000;
/// Boot-time of the replay's start: 30 days, so that events can lie weeks in the past.
pub const BASE_NS: u64 = 30 * 24 * 3600 * SEC;
/// Remote address with known answers in the test databases: GB, in `GeoIP2-Country-Test`.
pub const REMOTE: [u8; 4] = [81, 2, 69, 160];

impl Kernel {
    /// The sockets the shutdown asked for TCP counters.
    pub fn tcp_asked(&self) -> &[u64] {
        &self.tcp_asked
    }

    /// How often the pipeline asked which sockets no process holds.
    pub fn held_asked(&self) -> usize {
        self.held_asked
    }
}

/// What the replayed kernel holds: per-socket counters for snapshots.
#[derive(Default)]
pub struct Kernel {
    sockets: HashMap<u64, Event>,
    changed: HashSet<u64>,
    /// Open peer slots, as the shutdown's read of them reports them.
    peer_slots: Vec<Event>,
    /// The kernel's TCP counters of sockets, as the shutdown's read by descriptor reports them
    /// (a socket without an entry is not found).
    tcp_counters: HashMap<u64, TcpCounters>,
    /// The sockets the shutdown asked for TCP counters.
    tcp_asked: Vec<u64>,
    /// Events the replayed kernel could not hand over (ring buffer full).
    events_lost: u64,
    /// The sockets some process holds (`None`: the replay cannot tell, as a host without reads
    /// by descriptor), and how often the pipeline asked.
    held: Option<HashSet<u64>>,
    held_asked: usize,
}

/// The source the pipeline reads: batches the test sends, snapshots of [`Kernel`].
pub struct Replay {
    events: Option<mpsc::Receiver<Batch>>,
    kernel: Arc<Mutex<Kernel>>,
    received: Arc<AtomicU64>,
    start: tokio::time::Instant,
    clock: Clock,
    /// What this replayed kernel cannot do (as a probe reports it at load).
    degradations: Vec<Degradation>,
}

impl EventSource for Replay {
    fn cgroup(&self) -> std::path::PathBuf {
        "/replay".into()
    }

    fn degradations(&self) -> Vec<Degradation> {
        self.degradations.clone()
    }

    fn clock(&self) -> Clock {
        self.clock
    }

    fn now_ns(&self) -> u64 {
        BASE_NS + u64::try_from(self.start.elapsed().as_nanos()).unwrap()
    }

    fn events(
        &mut self,
        tx: mpsc::Sender<Batch>,
        mut stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), probe::Error>> + Send + 'static {
        let mut rx = self.events.take().expect("events() is called once");
        let received = Arc::clone(&self.received);
        async move {
            loop {
                tokio::select! {
                    batch = rx.recv() => {
                        let Some(batch) = batch else {
                            let _ = stop.changed().await;
                            return Ok(());
                        };
                        received.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        if tx.send(batch).await.is_err() {
                            return Ok(());
                        }
                    }
                    _ = stop.changed() => {
                        // What was produced before the stop still goes through.
                        while let Ok(batch) = rx.try_recv() {
                            received.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            let _ = tx.send(batch).await;
                        }
                        return Ok(());
                    }
                }
            }
        }
    }

    fn kernel_stats(&self) -> Result<KernelStats, probe::Error> {
        let events_lost = self.kernel.lock().unwrap().events_lost;
        Ok(KernelStats {
            events_submitted: self.received.load(Ordering::Relaxed) + events_lost,
            events_lost,
            ..KernelStats::default()
        })
    }

    fn drained(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), 0)
    }

    fn snapshot(
        &mut self,
        _open: &[probe::OpenSocket],
        _at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<Vec<u64>>> {
        let mut kernel = self.kernel.lock().unwrap();
        let changed: Vec<u64> = kernel.changed.drain().collect();
        let batch = changed
            .iter()
            .filter_map(|cookie| kernel.sockets.get(cookie))
            .map(|ev| Event { flags: FLAG_SNAPSHOT, ..*ev })
            .collect::<Vec<_>>();
        for ev in &batch {
            each(EventKind::Update, ev);
        }
        Some(Ok(Vec::new()))
    }

    fn peer_snapshot(
        &mut self,
        _sockets: &[probe::OpenSocket],
        _at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<()>> {
        let slots = self.kernel.lock().unwrap().peer_slots.clone();
        for ev in &slots {
            each(EventKind::PeerUpdate, &Event { flags: FLAG_SNAPSHOT, ..*ev });
        }
        Some(Ok(()))
    }

    fn held_by_none(&mut self, sockets: &[probe::OpenSocket]) -> Option<Vec<u64>> {
        let mut kernel = self.kernel.lock().unwrap();
        kernel.held_asked += 1;
        let held = kernel.held.as_ref()?;
        Some(sockets.iter().map(|s| s.cookie).filter(|c| !held.contains(c)).collect())
    }

    /// As the probe's read by descriptor after an iterator snapshot: an `Update` with the TCP
    /// counters and no address family (the counters' local address only).
    fn tcp_snapshot(
        &mut self,
        sockets: &[probe::OpenSocket],
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<Vec<u64>> {
        let mut kernel = self.kernel.lock().unwrap();
        kernel.tcp_asked.extend(sockets.iter().map(|s| s.cookie));
        let mut missed = Vec::new();
        for s in sockets {
            match kernel.tcp_counters.get(&s.cookie) {
                Some(counters) => {
                    let (_, mut ev) = tcp(EventKind::Update, s.cookie, self.now_ns(), ByteCounters::default());
                    ev.flags = FLAG_SNAPSHOT | FLAG_TCP_COUNTERS;
                    ev.tcp = *counters;
                    ev.tuple =
                        Tuple { local_addr: ev.tuple.local_addr, local_port: ev.tuple.local_port, ..Tuple::default() };
                    each(EventKind::Update, &ev);
                }
                None => missed.push(s.cookie),
            }
        }
        Some(missed)
    }
}

/// The test's side of a running pipeline.
pub struct Run {
    events: mpsc::Sender<Batch>,
    kernel: Arc<Mutex<Kernel>>,
    reload: mpsc::Sender<()>,
    shutdown: oneshot::Sender<()>,
    out: mpsc::Receiver<Vec<Output>>,
    /// Outputs received (in batches) but not yet looked at by [`Run::next_flow`].
    unread: std::collections::VecDeque<Output>,
    /// Outputs read before [`Run::stop`].
    seen: Vec<Output>,
    pipeline: tokio::task::JoinHandle<Result<Stats, monitor::daemon::Error>>,
    start: tokio::time::Instant,
    /// The metric registry (`[metrics]` enabled in the settings).
    pub metrics: Option<Arc<monitor::metrics::Metrics>>,
}

impl Run {
    /// Opens the pipeline of `settings` and starts it on a replay.
    pub fn start(settings: &Settings) -> Self {
        Self::start_degraded(settings, &[])
    }

    /// As [`Run::start`], on a replayed kernel with these degradations (as a probe on a kernel
    /// without some hooks reports them).
    pub fn start_degraded(settings: &Settings, degradations: &[Degradation]) -> Self {
        let pipeline = Pipeline::open(settings).expect("pipeline opens");
        let metrics = pipeline.metrics();
        let (events, events_rx) = mpsc::channel(16);
        let kernel = Arc::new(Mutex::new(Kernel::default()));
        let start = tokio::time::Instant::now();
        // Wall clock of BASE_NS is now: records carry today's dates.
        let clock = Clock::with_offset(Timestamp::now().as_nanosecond() - i128::from(BASE_NS));
        let replay = Replay {
            events: Some(events_rx),
            kernel: Arc::clone(&kernel),
            received: Arc::default(),
            start,
            clock,
            degradations: degradations.to_vec(),
        };
        let (reload, reload_rx) = mpsc::channel(1);
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let (out_tx, out) = monitor::daemon::output_channel();
        let pipeline = tokio::spawn(pipeline.run(replay, reload_rx, out_tx, async move {
            let _ = shutdown_rx.await;
        }));
        Self {
            events,
            kernel,
            reload,
            shutdown,
            out,
            unread: Default::default(),
            seen: Vec::new(),
            pipeline,
            start,
            metrics,
        }
    }

    pub fn now_ns(&self) -> u64 {
        BASE_NS + u64::try_from(self.start.elapsed().as_nanos()).unwrap()
    }

    pub async fn send(&self, batch: Batch) {
        self.events.send(batch).await.expect("replay running");
    }

    /// Sets a socket's counters as the next snapshot reports them.
    pub fn set_counters(&self, ev: Event) {
        let mut kernel = self.kernel.lock().unwrap();
        kernel.sockets.insert(ev.cookie, ev);
        kernel.changed.insert(ev.cookie);
    }

    /// Counts `n` more events the replayed kernel lost.
    pub fn lose_events(&self, n: u64) {
        self.kernel.lock().unwrap().events_lost += n;
    }

    /// Sets the open peer slots the shutdown reads.
    pub fn set_peer_slots(&self, slots: Vec<Event>) {
        self.kernel.lock().unwrap().peer_slots = slots;
    }

    /// Sets the sockets some process holds (the others are gone when the pipeline looks).
    pub fn set_held(&self, cookies: &[u64]) {
        self.kernel.lock().unwrap().held = Some(cookies.iter().copied().collect());
    }

    /// Sets the kernel's TCP counters of socket `cookie`, read at shutdown.
    pub fn set_tcp_counters(&self, cookie: u64, tcp: TcpCounters) {
        self.kernel.lock().unwrap().tcp_counters.insert(cookie, tcp);
    }

    /// The replayed kernel, to look at after [`Run::stop`].
    pub fn kernel(&self) -> Arc<Mutex<Kernel>> {
        Arc::clone(&self.kernel)
    }

    /// Asks for a reload (as SIGHUP does) and waits until the loop has taken the request: what
    /// is sent afterwards reaches the sink after the reload.
    pub async fn reload(&self) {
        self.reload.send(()).await.expect("pipeline running");
        drop(self.reload.reserve().await.expect("pipeline running"));
    }

    /// Waits for the next flow record the sink has finished (enriched, journaled, printed).
    pub async fn next_flow(&mut self) -> FlowOutput {
        loop {
            if self.unread.is_empty() {
                self.unread.extend(self.out.recv().await.expect("pipeline running"));
            }
            let Some(output) = self.unread.pop_front() else { continue };
            self.seen.push(output.clone());
            if let Output::Flow(f) = output {
                return *f;
            }
        }
    }

    /// Stops the pipeline; returns everything it output and its final statistics.
    pub async fn stop(self) -> (Vec<Output>, Stats) {
        let Self { shutdown, mut out, unread, seen: mut outputs, pipeline, .. } = self;
        shutdown.send(()).expect("pipeline running");
        outputs.extend(unread);
        while let Some(batch) = out.recv().await {
            outputs.extend(batch);
        }
        let stats = pipeline.await.expect("pipeline task").expect("pipeline ends without error");
        (outputs, stats)
    }
}

pub fn flows(outputs: &[Output]) -> Vec<&FlowOutput> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Flow(f) => Some(&**f),
            _ => None,
        })
        .collect()
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(name)
}

/// Replaces `path` by a copy of `from` the way installers do (rename over it).
pub fn install(from: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    fs::copy(from, &tmp).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Settings with everything in `dir`: country and ASN test databases, journal, weekly exports.
pub fn settings(dir: &Path) -> Settings {
    let country = dir.join("country.mmdb");
    if !country.exists() {
        install(&fixture("GeoIP2-Country-Test.mmdb"), &country);
    }
    let d = dir.display();
    let raw: RawConfig = toml::from_str(&format!(
        r#"
        [probe]
        update_interval_secs = 10
        [tracker]
        tcp_close_grace_secs = 120
        stats_interval_secs = 3600
        [geo]
        country_db = "{d}/country.mmdb"
        asn_db = "{asn}"
        max_age_days = 0
        [journal]
        path = "{d}/journal.db"
        [report]
        time_zone = "UTC"
        export_dir = "{d}/reports"
        export_formats = ["json"]
        "#,
        asn = fixture("GeoLite2-ASN-Test.mmdb").display(),
    ))
    .unwrap();
    Settings::resolve(raw, None).unwrap()
}

pub fn ip(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// A kernel event of TCP socket `cookie` (10.0.0.1:40000 → 81.2.69.160:443, process "replayed").
pub fn tcp(kind: EventKind, cookie: u64, ts_ns: u64, bytes: ByteCounters) -> (EventKind, Event) {
    let mut comm = [0u8; 16];
    comm[..8].copy_from_slice(b"replayed");
    // No such process: the app comes from the kernel's data (its name is `comm`).
    let owner = KOwner {
        tgid: u32::MAX - 1,
        pid: u32::MAX - 1,
        uid: 1000,
        gid: 1000,
        cgroup_id: 1,
        created_ns: ts_ns,
        comm,
        source: KSource::SockCreate as u8,
        start_cs: 0,
        exec_mark: [0; 3],
    };
    let tuple = Tuple {
        local_addr: ip([10, 0, 0, 1]),
        remote_addr: ip(REMOTE),
        local_port: 40000,
        remote_port: 443,
        family: AF_INET,
        protocol: IPPROTO_TCP,
    };
    let ev = Event { kind: kind as u32, ts_ns, cookie, first_ns: ts_ns, owner, tuple, bytes, ..Event::default() };
    (kind, ev)
}

/// Counters of a flow that sent `tx` and received `rx` payload bytes (wire: +40 per direction).
pub fn bytes(tx: u64, rx: u64) -> ByteCounters {
    ByteCounters {
        wire_tx_bytes: tx + 40,
        wire_tx_packets: 2,
        wire_rx_bytes: rx + 40,
        wire_rx_packets: 3,
        app_tx_bytes: tx,
        app_rx_bytes: rx,
    }
}

/// A whole TCP flow: established at `ts`, released and closed one and two seconds later.
pub fn tcp_flow(cookie: u64, ts: u64, tx: u64, rx: u64) -> Batch {
    vec![
        tcp(EventKind::Established, cookie, ts, ByteCounters::default()),
        tcp(EventKind::Release, cookie, ts + SEC, bytes(tx, rx)),
        tcp(EventKind::TcpClose, cookie, ts + 2 * SEC, bytes(tx, rx)),
    ]
}

pub fn journal(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(dir.join("journal.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// A TCP socket the process released before `TCP_CLOSE`: the kernel sends no `Release`, and
/// its `TcpClose` (flagged `FLAG_RELEASED`) ends the flow with one complete record.
pub fn tcp_flow_released_first(cookie: u64, ts: u64, tx: u64, rx: u64) -> Batch {
    let mut close = tcp(EventKind::TcpClose, cookie, ts + 2 * SEC, bytes(tx, rx));
    close.1.flags = FLAG_RELEASED;
    vec![tcp(EventKind::Established, cookie, ts, ByteCounters::default()), close]
}

/// A UDP event of socket `cookie` at 10.0.0.1:5300 (process "replayed") with `remote`:`remote_port`.
fn udp_event(
    kind: EventKind,
    cookie: u64,
    ts_ns: u64,
    (remote, remote_port): ([u8; 4], u16),
    bytes: ByteCounters,
) -> (EventKind, Event) {
    let (_, mut ev) = tcp(kind, cookie, ts_ns, bytes);
    ev.tuple.protocol = IPPROTO_UDP;
    ev.tuple.local_port = 5300;
    ev.tuple.remote_addr = ip(remote);
    ev.tuple.remote_port = remote_port;
    (kind, ev)
}

/// A peer event of unconnected UDP socket `cookie`: one 1 KiB datagram each way with `remote`.
pub fn udp_peer(
    kind: EventKind,
    cookie: u64,
    ts_ns: u64,
    generation: u64,
    remote: [u8; 4],
    port: u16,
) -> (EventKind, Event) {
    let (kind, mut ev) = udp_event(kind, cookie, ts_ns, (remote, port), udp_bytes());
    ev.generation = generation;
    (kind, ev)
}

/// Unconnected UDP socket `cookie` announced at its first peer (a socket-level `Update` without
/// a remote address), with socket counters holding two peers' datagrams (as the kernel's do).
pub fn udp_server_update(cookie: u64, ts_ns: u64) -> (EventKind, Event) {
    let one = udp_bytes();
    let two = ByteCounters {
        wire_tx_bytes: 2 * one.wire_tx_bytes,
        wire_tx_packets: 2 * one.wire_tx_packets,
        wire_rx_bytes: 2 * one.wire_rx_bytes,
        wire_rx_packets: 2 * one.wire_rx_packets,
        app_tx_bytes: 2 * one.app_tx_bytes,
        app_rx_bytes: 2 * one.app_rx_bytes,
    };
    udp_event(EventKind::Update, cookie, ts_ns, ([0; 4], 0), two)
}

/// The release of unconnected UDP socket `cookie` (its peers were reported before).
pub fn udp_server_release(cookie: u64, ts_ns: u64) -> (EventKind, Event) {
    udp_event(EventKind::Release, cookie, ts_ns, ([0; 4], 0), ByteCounters::default())
}

/// A connected UDP client socket `cookie` at `local`:`port` to 10.0.0.1:5300, released after one
/// 1 KiB datagram each way.
pub fn udp_connected_release(cookie: u64, ts_ns: u64, local: [u8; 4], port: u16) -> (EventKind, Event) {
    let (kind, mut ev) = udp_event(EventKind::Release, cookie, ts_ns, ([10, 0, 0, 1], 5300), udp_bytes());
    ev.tuple.local_addr = ip(local);
    ev.tuple.local_port = port;
    ev.flags = monitor_common::event::FLAG_CONNECTED;
    (kind, ev)
}

/// One 1 KiB datagram each way (wire: + 28 bytes of IP and UDP headers).
fn udp_bytes() -> ByteCounters {
    ByteCounters {
        wire_tx_bytes: 1052,
        wire_tx_packets: 1,
        wire_rx_bytes: 1052,
        wire_rx_packets: 1,
        app_tx_bytes: 1024,
        app_rx_bytes: 1024,
    }
}
