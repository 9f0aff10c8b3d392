//! Tests of the BTF reader on synthetic blobs with known offsets, and on this kernel's BTF.

use super::*;

/// Builds a BTF blob: strings and type records, as `Documentation/bpf/btf.rst` lays them out.
#[derive(Default)]
struct Builder {
    strings: Vec<u8>,
    types: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Self {
        Self { strings: vec![0], types: Vec::new(), next_id: 1 }
    }
    fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = u32::try_from(self.strings.len()).unwrap();
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        at
    }
    fn record(&mut self, name: &str, kind: u32, vlen: u32, kind_flag: bool, size_or_type: u32) -> u32 {
        let name = self.string(name);
        let info = (kind << 24) | vlen | if kind_flag { 1 << 31 } else { 0 };
        for v in [name, info, size_or_type] {
            self.types.extend_from_slice(&v.to_ne_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }
    fn int(&mut self, name: &str, size: u32) -> u32 {
        let id = self.record(name, KIND_INT, 0, false, size);
        self.types.extend_from_slice(&(size * 8).to_ne_bytes());
        id
    }
    fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        let id = self.record("", KIND_ARRAY, 0, false, 0);
        for v in [elem, index, nelems] {
            self.types.extend_from_slice(&v.to_ne_bytes());
        }
        id
    }
    /// `members`: (name, type, bit offset, bitfield size).
    fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
        let bitfields = members.iter().any(|m| m.3 != 0);
        let id = self.record(name, kind, u32::try_from(members.len()).unwrap(), bitfields, size);
        for (m, ty, bits, bitfield) in members {
            let m = self.string(m);
            let off = if bitfields { (bitfield << 24) | bits } else { *bits };
            for v in [m, *ty, off] {
                self.types.extend_from_slice(&v.to_ne_bytes());
            }
        }
        id
    }
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9f_u16.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        let type_len = u32::try_from(self.types.len()).unwrap();
        for v in [24, 0, type_len, type_len, u32::try_from(self.strings.len()).unwrap()] {
            out.extend_from_slice(&v.to_ne_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A kernel-like layout: `family_bits` is where `skc_family` sits, `protocol_bitfield` makes
/// `sk_protocol` an 8-bit bitfield (pre-5.6 kernels).
fn blob(family_bits: u32, protocol_bitfield: bool) -> Vec<u8> {
    blob_with_comm(family_bits, protocol_bitfield, 16)
}

/// As [`blob`], with a `task_struct` whose `comm` has `comm_len` bytes.
fn blob_with_comm(family_bits: u32, protocol_bitfield: bool, comm_len: u32) -> Vec<u8> {
    let mut b = Builder::new();
    let char_ = b.int("char", 1);
    let comm = b.array(char_, char_, comm_len);
    let task_ptr = b.record("", KIND_PTR, 0, false, 0);
    let u64_ = b.int("long long unsigned int", 8);
    let start = b.record("u64", KIND_TYPEDEF, 0, false, u64_);
    let int_ = b.int("int", 4);
    let pid_t = b.record("pid_t", KIND_TYPEDEF, 0, false, int_);
    b.composite(
        KIND_STRUCT,
        "task_struct",
        4000,
        &[
            ("mm", task_ptr, 1160 * 8, 0),
            ("pid", pid_t, 1464 * 8, 0),
            ("tgid", pid_t, 1468 * 8, 0),
            ("group_leader", task_ptr, 1480 * 8, 0),
            ("start_boottime", start, 1904 * 8, 0),
            ("cred", task_ptr, 2920 * 8, 0),
            ("comm", comm, 2944 * 8, 0),
        ],
    );
    // `kuid_t` and `kgid_t` are structs of one `u32` (typedefs of anonymous structs).
    let uint = b.int("unsigned int", 4);
    let kuid = b.composite(KIND_STRUCT, "", 4, &[("val", uint, 0, 0)]);
    let kuid_t = b.record("kuid_t", KIND_TYPEDEF, 0, false, kuid);
    let kgid = b.composite(KIND_STRUCT, "", 4, &[("val", uint, 0, 0)]);
    let kgid_t = b.record("kgid_t", KIND_TYPEDEF, 0, false, kgid);
    b.composite(
        KIND_STRUCT,
        "cred",
        184,
        &[("usage", u64_, 0, 0), ("uid", kuid_t, 8 * 8, 0), ("gid", kgid_t, 12 * 8, 0)],
    );
    // The kernel's `mm_struct` keeps its fields in an anonymous struct (`__randomize_layout`).
    let ulong = b.int("long unsigned int", 8);
    let inner =
        b.composite(KIND_STRUCT, "", 1000, &[("mmap_base", ulong, 16 * 8, 0), ("start_stack", ulong, 368 * 8, 0)]);
    b.composite(KIND_STRUCT, "mm_struct", 1100, &[("", inner, 0, 0)]);
    let u32_seq = b.int("u32", 4);
    b.composite(
        KIND_STRUCT,
        "tcp_sock",
        2400,
        &[
            ("rcv_nxt", u32_seq, 1540 * 8, 0),
            ("copied_seq", u32_seq, 1544 * 8, 0),
            ("bytes_received", start, 1560 * 8, 0),
            ("bytes_acked", u64_, 1656 * 8, 0),
            ("snd_una", u32_seq, 1664 * 8, 0),
            ("write_seq", u32_seq, 1700 * 8, 0),
        ],
    );
    let u16_ = b.int("unsigned short", 2);
    let be16 = b.record("__be16", KIND_TYPEDEF, 0, false, u16_);
    let u32_ = b.int("unsigned int", 4);
    let in6 = b.composite(KIND_STRUCT, "in6_addr", 16, &[]);
    let pair = b.composite(KIND_STRUCT, "", 8, &[("skc_daddr", u32_, 0, 0), ("skc_rcv_saddr", u32_, 32, 0)]);
    let addr_union = b.composite(KIND_UNION, "", 8, &[("skc_addrpair", u32_, 0, 0), ("", pair, 0, 0)]);
    let ports = b.composite(KIND_STRUCT, "", 4, &[("skc_dport", be16, 0, 0), ("skc_num", u16_, 16, 0)]);
    // `skc_flags` shares its place with the listener and time-wait pointers.
    let flags_union = b.composite(KIND_UNION, "", 8, &[("skc_flags", ulong, 0, 0), ("skc_listener", ulong, 0, 0)]);
    let common = b.composite(
        KIND_STRUCT,
        "sock_common",
        136,
        &[
            ("", addr_union, 0, 0),
            ("", ports, 96, 0),
            ("skc_family", u16_, family_bits, 0),
            ("skc_v6_daddr", in6, 56 * 8, 0),
            ("skc_v6_rcv_saddr", in6, 72 * 8, 0),
            ("", flags_union, 96 * 8, 0),
        ],
    );
    let protocol =
        if protocol_bitfield { ("sk_protocol", u32_, 516 * 8, 8) } else { ("sk_protocol", u16_, 516 * 8, 0) };
    let void_ptr = b.record("", KIND_PTR, 0, false, 0);
    let sock = b.composite(
        KIND_STRUCT,
        "sock",
        800,
        &[("__sk_common", common, 0, 0), protocol, ("sk_socket", void_ptr, 600 * 8, 0)],
    );
    let ptr = b.record("", 2, 0, false, sock);
    b.composite(KIND_STRUCT, "socket", 128, &[("state", u32_, 0, 0), ("sk", ptr, 24 * 8, 0)]);
    b.finish()
}

#[test]
fn offsets_are_read_through_anonymous_members() {
    let layout = sock_layout(&blob(128, false)).unwrap();
    assert_eq!(
        layout,
        SockLayout {
            v6_daddr: 56,
            v6_rcv_saddr: 72,
            protocol: 516,
            sk_socket: 600,
            task_leader_comm: (1480, 2944),
            task_start_boottime: 1904,
            task_mm_start_stack: (1160, 368),
            task_pid: 1464,
            task_cred_uid: (2920, 8),
            tcp_copied_seq: 1544,
            tcp_release: [1560, 1656, 1540, 96],
            tcp_send_queue: [1700, 1664],
            mptcp_sock: false
        }
    );
    // A `comm` of another size is not read (the programs copy 16 bytes); the rest stands.
    let layout = sock_layout(&blob_with_comm(128, false, 32)).unwrap();
    assert_eq!((layout.task_leader_comm, layout.sk_socket), ((0, 0), 600));
}

#[test]
fn a_moved_fixed_field_or_a_bitfield_protocol_is_refused() {
    let err = sock_layout(&blob(160, false)).unwrap_err();
    assert!(matches!(err, LayoutError::Moved { field: "skc_family", found: 20, expected: 16 }), "{err:?}");
    let err = sock_layout(&blob(128, true)).unwrap_err();
    assert!(matches!(err, LayoutError::Shape("sk_protocol")), "{err:?}");
}

#[test]
fn garbage_and_truncated_blobs_are_errors_not_panics() {
    assert!(matches!(sock_layout(b"nonsense"), Err(LayoutError::Malformed(_))));
    let full = blob(128, false);
    for cut in [0, 3, 10, 24, 40, full.len() / 2, full.len() - 1] {
        assert!(sock_layout(&full[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn this_kernel_has_the_layout_the_fallback_programs_read() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("SKIP: no /sys/kernel/btf/vmlinux");
        return;
    }
    let layout = kernel_sock_layout().unwrap();
    // In the kernel source the two IPv6 addresses follow each other in `struct sock_common`,
    // after `skc_net` (so past the fixed fields), and `sk_protocol` lies beyond `sock_common`.
    assert_eq!(layout.v6_rcv_saddr, layout.v6_daddr + 16, "{layout:?}");
    assert!(layout.v6_daddr >= 40, "{layout:?}");
    assert!(layout.protocol > layout.v6_rcv_saddr, "{layout:?}");
    // A pointer, past `sock_common`.
    assert!(layout.sk_socket > layout.v6_rcv_saddr && layout.sk_socket.is_multiple_of(8), "{layout:?}");
    // Both in `task_struct`, the pointer aligned, `comm` after it (as in the kernel source).
    let (leader, comm) = layout.task_leader_comm;
    assert!(leader > 0 && leader.is_multiple_of(8) && comm > leader, "{layout:?}");
    // Aligned, between them (as in the kernel source).
    let start = layout.task_start_boottime;
    assert!(start > leader && start < comm && start.is_multiple_of(8), "{layout:?}");
    // Both pointers' worth: aligned, found.
    let (mm, stack) = layout.task_mm_start_stack;
    assert!(mm > 0 && mm.is_multiple_of(8) && stack > 0 && stack.is_multiple_of(8), "{layout:?}");
    // Ids: `tgid` right after `pid` (checked by the reader), `gid` right after `uid`.
    assert!(layout.task_pid > 0 && layout.task_pid.is_multiple_of(4), "{layout:?}");
    let (cred, uid) = layout.task_cred_uid;
    assert!(cred > 0 && cred.is_multiple_of(8) && uid > 0 && uid.is_multiple_of(4), "{layout:?}");
    // Past the `struct sock` a `tcp_sock` starts with, aligned.
    assert!(layout.tcp_copied_seq > layout.sk_socket && layout.tcp_copied_seq.is_multiple_of(4), "{layout:?}");
    // The counters a release reads: found, aligned, past `struct sock` too.
    let [received, acked, rcv_nxt, sk_flags] = layout.tcp_release;
    // In `struct sock_common`, past the addresses, aligned.
    assert!(sk_flags > layout.v6_rcv_saddr && sk_flags < 136 && sk_flags.is_multiple_of(8), "{layout:?}");
    assert!(received > layout.sk_socket && received.is_multiple_of(8), "{layout:?}");
    assert!(acked > layout.sk_socket && acked.is_multiple_of(8), "{layout:?}");
    assert!(rcv_nxt > layout.sk_socket && rcv_nxt.is_multiple_of(4), "{layout:?}");
    // With the send queue's two ends, distinct.
    let [write_seq, snd_una] = layout.tcp_send_queue;
    assert!(write_seq > layout.sk_socket && write_seq.is_multiple_of(4), "{layout:?}");
    assert!(snd_una > layout.sk_socket && snd_una.is_multiple_of(4) && snd_una != write_seq, "{layout:?}");
}
