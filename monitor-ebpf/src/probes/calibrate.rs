//! Empty programs for measuring the measurement: `cargo xtask bench` attaches them next to the
//! real ones (daemon started with `MONITOR_BPF_CALIBRATION=1`) so that the kernel's BPF run-time
//! statistics show what one run of a program that does nothing costs on the same hook: the
//! dispatch and the statistics' own clock reads. The daemon never attaches them otherwise.
//!
//! Each returns the value that lets the packet or socket through.

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock, sock_ops},
    programs::{SkBuffContext, SockContext, SockOpsContext},
};

use super::ALLOW;

/// Does nothing on `cgroup_skb/egress`.
#[cgroup_skb(egress)]
pub fn calibrate_egress(_ctx: SkBuffContext) -> i32 {
    ALLOW
}

/// Does nothing on `cgroup_skb/ingress`.
#[cgroup_skb(ingress)]
pub fn calibrate_ingress(_ctx: SkBuffContext) -> i32 {
    ALLOW
}

/// Does nothing on `sockops`.
#[sock_ops]
pub fn calibrate_sock_ops(_ctx: SockOpsContext) -> u32 {
    1
}

/// Does nothing on `cgroup/sock_create`.
#[cgroup_sock(sock_create)]
pub fn calibrate_sock_create(_ctx: SockContext) -> i32 {
    ALLOW
}
