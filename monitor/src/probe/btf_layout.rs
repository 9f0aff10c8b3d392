//! Offsets of the `struct sock` fields the fallback hooks read, from kernel BTF.
//!
//! The fallback programs (`monitor-ebpf/src/probes/fallback.rs`) see a BTF `struct sock *` and
//! read its addresses with `bpf_probe_read_kernel`. aya 0.14 does not expose BTF struct members,
//! so the few that matter are looked up here with a minimal reader of the BTF format
//! (`Documentation/bpf/btf.rst`): the type section, structs and unions with their members,
//! anonymous members followed. Everything else is skipped by its documented size.

use std::collections::HashMap;

/// Offsets the fallback programs take as load-time globals, and the fixed ones they assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockLayout {
    /// `skc_v6_daddr` in `struct sock`.
    pub v6_daddr: u32,
    /// `skc_v6_rcv_saddr` in `struct sock`.
    pub v6_rcv_saddr: u32,
    /// The 16-bit `sk_protocol` in `struct sock` (a bitfield before Linux 5.6: unsupported).
    pub protocol: u32,
    /// The `sk_socket` pointer in `struct sock` (null while no `struct socket` holds the sock).
    pub sk_socket: u32,
    /// The `group_leader` pointer and the 16-byte `comm` in `struct task_struct` (0, 0 when
    /// either is missing or has another shape): the process's name, read at a socket's first read
    /// or write instead of the name of the thread making it (an io_uring worker's).
    pub task_leader_comm: (u32, u32),
    /// The 64-bit `start_boottime` in `struct task_struct` (0 when missing or of another shape):
    /// the process's start, which an owner carries so a reused pid is not taken for the process
    /// that held it before.
    pub task_start_boottime: u32,
    /// The `mm` pointer in `struct task_struct` and the 64-bit `start_stack` in `struct
    /// mm_struct` (0, 0 when either is missing or has another shape): where the program a process
    /// runs has its stack, which every exec places afresh (`Owner::exec_mark`).
    pub task_mm_start_stack: (u32, u32),
    /// The 32-bit `pid` in `struct task_struct`, with the 32-bit `tgid` right after it (0 when
    /// missing or of another shape): the ids `bpf_get_current_pid_tgid` gives, read through BTF.
    pub task_pid: u32,
    /// The `cred` pointer in `struct task_struct` and the 32-bit `uid` in `struct cred`, with
    /// `gid` right after it (0, 0 when missing or of another shape): the ids
    /// `bpf_get_current_uid_gid` gives (the real ones, in the initial user namespace), read
    /// through BTF.
    pub task_cred_uid: (u32, u32),
    /// The 32-bit `copied_seq` in `struct tcp_sock` (0 when missing or of another shape): the
    /// sequence number up to which the process has taken the stream, read at a released
    /// socket's `TCP_CLOSE` (`TCP_CONSUMED`).
    pub tcp_copied_seq: u32,
    /// The 64-bit `bytes_received` and `bytes_acked` and the 32-bit `rcv_nxt` in `struct
    /// tcp_sock`, and the 64-bit `sk_flags` (`skc_flags` of `struct sock_common`, which `struct
    /// sock` starts with) (all 0 when one is missing or of
    /// another shape): read with `copied_seq` at the release of a TCP socket older than the
    /// monitor, whose end no `TCP_CLOSE` reports.
    pub tcp_release: [u32; 4],
    /// The 32-bit `write_seq` and `snd_una` in `struct tcp_sock` (both 0 when one is missing or
    /// of another shape): read with the counters above, what the process wrote that waits in the
    /// send queue at its release (sent after it).
    pub tcp_send_queue: [u32; 2],
    /// The kernel has `struct mptcp_sock` (built with `CONFIG_MPTCP`): the return type of
    /// `bpf_skc_to_mptcp_sock`, without which the verifier refuses any program calling it.
    pub mptcp_sock: bool,
}

/// Why the layout is not usable.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not BTF, or truncated.
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    /// A type or member is missing.
    #[error("kernel BTF has no `{0}`")]
    Missing(String),
    /// A field is not where the fallback programs read it.
    #[error("`{field}` is at byte {found} in this kernel, the fallback programs read it at {expected}")]
    Moved { field: &'static str, found: u32, expected: u32 },
    /// A field is a bitfield or has an unexpected size.
    #[error("`{0}` has an unexpected type (bitfield or size)")]
    Shape(&'static str),
}

/// Offsets in `struct sock_common` (and `struct socket`) the programs use as constants.
const FIXED: [(&str, &str, u32); 6] = [
    ("sock_common", "skc_daddr", 0),
    ("sock_common", "skc_rcv_saddr", 4),
    ("sock_common", "skc_dport", 12),
    ("sock_common", "skc_num", 14),
    ("sock_common", "skc_family", 16),
    ("socket", "sk", 24),
];

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// One member of a struct or union.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    /// Bit offset.
    bits: u32,
    /// Bitfield size (0: not a bitfield).
    bitfield: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    members: Vec<Member>,
    /// Number of elements of an array (0 for other kinds).
    nelems: u32,
}

/// The types of a BTF blob that this module needs (others are kept as placeholders).
struct Types {
    /// Index 0 is `void`.
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, LayoutError> {
    let bytes = data.get(at..at + 4).ok_or(LayoutError::Malformed("truncated"))?;
    Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn string_at(strings: &[u8], offset: u32) -> String {
    let start = offset as usize;
    let tail = strings.get(start..).unwrap_or_default();
    let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

/// Bytes that follow a type record of `kind` with `vlen` entries (btf.rst §2.2).
fn extra_bytes(kind: u32, vlen: usize) -> Result<usize, LayoutError> {
    Ok(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        _ => return Err(LayoutError::Malformed("unknown type kind")),
    })
}

impl Types {
    fn parse(data: &[u8]) -> Result<Self, LayoutError> {
        let magic = data.get(0..2).ok_or(LayoutError::Malformed("truncated"))?;
        if u16::from_ne_bytes([magic[0], magic[1]]) != 0xeb9f {
            return Err(LayoutError::Malformed("bad magic (or other byte order)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some((start, start.checked_add(len)?)))
                .and_then(|(start, end)| data.get(start..end))
                .ok_or(LayoutError::Malformed("section out of bounds"))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let mut types = vec![Type { kind: 0, size_or_type: 0, members: Vec::new(), nelems: 0 }];
        let mut structs = HashMap::new();
        let mut at = 0;
        while at < type_data.len() {
            let (name_off, info, size_or_type) =
                (u32_at(type_data, at)?, u32_at(type_data, at + 4)?, u32_at(type_data, at + 8)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let extra = extra_bytes(kind, vlen)?;
            let mut members = Vec::new();
            if kind == KIND_STRUCT || kind == KIND_UNION {
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let (m_name, m_type, m_off) =
                        (u32_at(type_data, m)?, u32_at(type_data, m + 4)?, u32_at(type_data, m + 8)?);
                    let (bits, bitfield) = if kind_flag { (m_off & 0x00ff_ffff, m_off >> 24) } else { (m_off, 0) };
                    members.push(Member { name: string_at(strings, m_name), type_id: m_type, bits, bitfield });
                }
            }
            // `struct btf_array { type, index_type, nelems }`.
            let nelems = if kind == KIND_ARRAY { u32_at(type_data, at + 8)? } else { 0 };
            if kind == KIND_STRUCT {
                let name = string_at(strings, name_off);
                if !name.is_empty() {
                    structs.entry(name).or_insert(u32::try_from(types.len()).unwrap_or(u32::MAX));
                }
            }
            types.push(Type { kind, size_or_type, members, nelems });
            at += extra;
        }
        Ok(Self { types, structs })
    }

    /// Byte offset and member of `field` in struct `name`, following anonymous members.
    fn find(&self, name: &str, field: &str) -> Result<(u32, Member), LayoutError> {
        let id = *self.structs.get(name).ok_or_else(|| LayoutError::Missing(format!("struct {name}")))?;
        self.find_in(id, field, 0)
            .ok_or_else(|| LayoutError::Missing(format!("{name}.{field}")))
            .map(|(bits, m)| (bits / 8, m))
    }

    fn find_in(&self, id: u32, field: &str, depth: u32) -> Option<(u32, Member)> {
        let ty = self.types.get(id as usize)?;
        if depth > 8 || (ty.kind != KIND_STRUCT && ty.kind != KIND_UNION) {
            return None;
        }
        for m in &ty.members {
            if m.name == field {
                return Some((m.bits, m.clone()));
            }
            if m.name.is_empty()
                && let Some((bits, found)) = self.find_in(self.resolve(m.type_id), field, depth + 1)
            {
                return Some((m.bits + bits, found));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    /// Whether `id` is a pointer type (after typedefs and qualifiers).
    fn is_pointer(&self, id: u32) -> bool {
        self.types.get(self.resolve(id) as usize).is_some_and(|t| t.kind == KIND_PTR)
    }

    /// Number of elements of an array type (after typedefs), if it is one.
    fn array_len(&self, id: u32) -> Option<u32> {
        let t = self.types.get(self.resolve(id) as usize)?;
        (t.kind == KIND_ARRAY).then_some(t.nelems)
    }

    /// Size in bytes of an integer or a struct (after typedefs), if it is one.
    fn size(&self, id: u32) -> Option<u32> {
        let t = self.types.get(self.resolve(id) as usize)?;
        matches!(t.kind, KIND_INT | KIND_STRUCT).then_some(t.size_or_type)
    }

    /// Size in bytes of an integer type (after typedefs), if it is one.
    fn int_size(&self, id: u32) -> Option<u32> {
        let t = self.types.get(self.resolve(id) as usize)?;
        (t.kind == KIND_INT).then_some(t.size_or_type)
    }
}

/// The layout of `struct sock` in the BTF blob `data`, checked against the fixed offsets.
///
/// # Errors
/// When the blob is malformed, a field is missing, moved, or has another shape.
pub fn sock_layout(data: &[u8]) -> Result<SockLayout, LayoutError> {
    let types = Types::parse(data)?;
    for (name, field, expected) in FIXED {
        let (found, _) = types.find(name, field)?;
        if found != expected {
            return Err(LayoutError::Moved { field, found, expected });
        }
    }
    let (common, _) = types.find("sock", "__sk_common")?;
    let (v6_daddr, _) = types.find("sock_common", "skc_v6_daddr")?;
    let (v6_rcv_saddr, _) = types.find("sock_common", "skc_v6_rcv_saddr")?;
    let (protocol, member) = types.find("sock", "sk_protocol")?;
    if member.bitfield != 0 || member.bits % 8 != 0 || types.int_size(member.type_id) != Some(2) {
        return Err(LayoutError::Shape("sk_protocol"));
    }
    let (sk_socket, member) = types.find("sock", "sk_socket")?;
    if member.bitfield != 0 || member.bits % 64 != 0 || !types.is_pointer(member.type_id) {
        return Err(LayoutError::Shape("sk_socket"));
    }
    if common != 0 {
        return Err(LayoutError::Moved { field: "__sk_common", found: common, expected: 0 });
    }
    let mptcp_sock = types.structs.contains_key("mptcp_sock");
    let task_leader_comm = task_leader_comm(&types).unwrap_or((0, 0));
    let task_start_boottime = task_start_boottime(&types).unwrap_or(0);
    let task_mm_start_stack = task_mm_start_stack(&types).unwrap_or((0, 0));
    let tcp_copied_seq = tcp_copied_seq(&types).unwrap_or(0);
    let tcp_release = tcp_release(&types).unwrap_or([0; 4]);
    let tcp_send_queue = tcp_send_queue(&types).unwrap_or([0; 2]);
    let task_pid = task_pid(&types).unwrap_or(0);
    let task_cred_uid = task_cred_uid(&types).unwrap_or((0, 0));
    Ok(SockLayout {
        v6_daddr,
        v6_rcv_saddr,
        protocol,
        sk_socket,
        task_leader_comm,
        task_start_boottime,
        task_mm_start_stack,
        task_pid,
        task_cred_uid,
        tcp_copied_seq,
        tcp_release,
        tcp_send_queue,
        mptcp_sock,
    })
}

/// `tcp_sock.bytes_received`, `bytes_acked` (64-bit integers), `rcv_nxt` (32-bit) and
/// `sock_common.skc_flags` (`sk_flags`, 64-bit), if so.
fn tcp_release(types: &Types) -> Option<[u32; 4]> {
    let int = |ty: &str, field: &str, bytes: u32| {
        let (at, member) = types.find(ty, field).ok()?;
        (member.bitfield == 0 && member.bits.is_multiple_of(8 * bytes) && types.int_size(member.type_id) == Some(bytes))
            .then_some(at)
    };
    Some([
        int("tcp_sock", "bytes_received", 8)?,
        int("tcp_sock", "bytes_acked", 8)?,
        int("tcp_sock", "rcv_nxt", 4)?,
        // `sk_flags` is `__sk_common.skc_flags` (at the start of `struct sock`), in a union.
        int("sock_common", "skc_flags", 8)?,
    ])
}

/// `tcp_sock.write_seq` and `snd_una`, if both are 32-bit integers.
fn tcp_send_queue(types: &Types) -> Option<[u32; 2]> {
    let int32 = |field: &str| {
        let (at, member) = types.find("tcp_sock", field).ok()?;
        (member.bitfield == 0 && member.bits.is_multiple_of(32) && types.int_size(member.type_id) == Some(4))
            .then_some(at)
    };
    Some([int32("write_seq")?, int32("snd_una")?])
}

/// `task_struct.pid`, if it and `tgid` are 32-bit integers, `tgid` right after it.
fn task_pid(types: &Types) -> Option<u32> {
    let (pid, member) = types.find("task_struct", "pid").ok()?;
    let int32 = |m: &Member| m.bitfield == 0 && m.bits.is_multiple_of(32) && types.int_size(m.type_id) == Some(4);
    let (tgid, tgid_member) = types.find("task_struct", "tgid").ok()?;
    (int32(&member) && int32(&tgid_member) && tgid == pid + 4).then_some(pid)
}

/// `task_struct.cred` (a pointer) and `cred.uid` (a 32-bit id: `kuid_t`, a struct of one `u32`),
/// if so and `gid` (the same) follows it.
fn task_cred_uid(types: &Types) -> Option<(u32, u32)> {
    let (cred, member) = types.find("task_struct", "cred").ok()?;
    if member.bitfield != 0 || member.bits % 64 != 0 || !types.is_pointer(member.type_id) {
        return None;
    }
    let id32 = |m: &Member| m.bitfield == 0 && m.bits.is_multiple_of(32) && types.size(m.type_id) == Some(4);
    let (uid, uid_member) = types.find("cred", "uid").ok()?;
    let (gid, gid_member) = types.find("cred", "gid").ok()?;
    (id32(&uid_member) && id32(&gid_member) && gid == uid + 4).then_some((cred, uid))
}

/// `tcp_sock.copied_seq`, if it is a 32-bit integer.
fn tcp_copied_seq(types: &Types) -> Option<u32> {
    let (copied, member) = types.find("tcp_sock", "copied_seq").ok()?;
    (member.bitfield == 0 && member.bits.is_multiple_of(32) && types.int_size(member.type_id) == Some(4))
        .then_some(copied)
}

/// `task_struct.mm` (a pointer) and `mm_struct.start_stack` (64 bits), if both are so.
fn task_mm_start_stack(types: &Types) -> Option<(u32, u32)> {
    let (mm, member) = types.find("task_struct", "mm").ok()?;
    if member.bitfield != 0 || member.bits % 64 != 0 || !types.is_pointer(member.type_id) {
        return None;
    }
    let (stack, member) = types.find("mm_struct", "start_stack").ok()?;
    (member.bitfield == 0 && member.bits % 64 == 0 && types.int_size(member.type_id) == Some(8)).then_some((mm, stack))
}

/// `task_struct.start_boottime`, if it is a 64-bit integer (Linux 5.5 and later).
fn task_start_boottime(types: &Types) -> Option<u32> {
    let (start, member) = types.find("task_struct", "start_boottime").ok()?;
    (member.bitfield == 0 && member.bits % 64 == 0 && types.int_size(member.type_id) == Some(8)).then_some(start)
}

/// `task_struct.group_leader` (a pointer) and `task_struct.comm` (16 bytes), if both are so.
fn task_leader_comm(types: &Types) -> Option<(u32, u32)> {
    let (leader, member) = types.find("task_struct", "group_leader").ok()?;
    if member.bitfield != 0 || member.bits % 64 != 0 || !types.is_pointer(member.type_id) {
        return None;
    }
    let (comm, member) = types.find("task_struct", "comm").ok()?;
    if member.bitfield != 0 || member.bits % 8 != 0 || types.array_len(member.type_id) != Some(16) {
        return None;
    }
    Some((leader, comm))
}

/// The layout of this kernel (`/sys/kernel/btf/vmlinux`).
///
/// # Errors
/// As [`sock_layout`], or when the file cannot be read.
pub fn kernel_sock_layout() -> Result<SockLayout, LayoutError> {
    let data =
        std::fs::read("/sys/kernel/btf/vmlinux").map_err(|_| LayoutError::Missing("/sys/kernel/btf/vmlinux".into()))?;
    sock_layout(&data)
}

#[cfg(test)]
mod tests;
