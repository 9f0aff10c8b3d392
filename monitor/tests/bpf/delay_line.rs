//! A delay line between two network namespaces, for tests that need a long round trip (the CI
//! kernel has no netem): a tun device in each namespace, and two forwarding threads in the test
//! process that hold every packet for `delay` before writing it to the other side. Stopped and
//! its devices removed on drop.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::fd::{AsRawFd, BorrowedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::sched::{CloneFlags, setns};

use crate::env::Netns;

/// `TUNSETIFF` (`_IOW('T', 202, int)`).
const TUNSETIFF: nix::libc::Ioctl = 0x4004_54ca;

/// The running delay line.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Creates tun device `name` in `ns` (the calling thread enters `ns` and returns to `home`).
fn tun_in(ns: &Netns, name: &str, home: &File) -> File {
    let target = File::open(ns.path()).unwrap();
    setns(&target, CloneFlags::CLONE_NEWNET).unwrap();
    let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun").unwrap();
    let mut req = [0_u8; 40]; // struct ifreq: name[16], then flags (short)
    req[..name.len()].copy_from_slice(name.as_bytes());
    let flags = i16::try_from(nix::libc::IFF_TUN | nix::libc::IFF_NO_PI).unwrap();
    req[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes) at the pointer, which is valid.
    let rc = unsafe { nix::libc::ioctl(tun.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    setns(home, CloneFlags::CLONE_NEWNET).unwrap();
    tun
}

/// Waits up to 100 ms for `fd` to be readable.
fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut p = nix::libc::pollfd { fd: fd.as_raw_fd(), events: nix::libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { nix::libc::poll(&raw mut p, 1, 100) > 0 }
}

fn forward(mut from: File, mut to: File, delay: Duration, stop: Arc<AtomicBool>) -> [JoinHandle<()>; 2] {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let stop_reader = Arc::clone(&stop);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0_u8; 65_536];
        while !stop_reader.load(Ordering::Relaxed) {
            // SAFETY: `from` is open for the whole loop.
            if !readable(unsafe { BorrowedFd::borrow_raw(from.as_raw_fd()) }) {
                continue;
            }
            match from.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let writer = std::thread::spawn(move || {
        while let Ok((due, packet)) = rx.recv() {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let _ = to.write(&packet);
        }
    });
    [reader, writer]
}

impl DelayLine {
    /// Tun `tda` in `a` and `tdb` in `b`, each way delayed by `delay`. Addresses and routes are
    /// the caller's (`ip -n … addr add … dev tda`).
    pub fn new(a: &Netns, b: &Netns, delay: Duration) -> Self {
        let home = File::open("/proc/self/ns/net").unwrap();
        let ta = tun_in(a, "tda", &home);
        let tb = tun_in(b, "tdb", &home);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        threads.extend(forward(ta.try_clone().unwrap(), tb.try_clone().unwrap(), delay, Arc::clone(&stop)));
        threads.extend(forward(tb, ta, delay, Arc::clone(&stop)));
        Self { stop, threads }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
