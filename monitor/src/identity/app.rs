//! App identity: what a flow is charged to in reports.

use serde::{Deserialize, Serialize};

/// App name of flows whose process is not known (never an empty name in reports).
pub const UNKNOWN_APP: &str = "unknown";

/// How the app identity was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppSource {
    /// Read from /proc while the process was alive (exe, cmdline, unit...).
    Proc,
    /// The process was gone: only what the kernel recorded (comm, uid).
    Kernel,
}

/// The app a flow belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct App {
    /// Name used in reports: a configured app group, else the executable's file name, else comm.
    pub name: String,
    /// Executable path (`/proc/<pid>/exe`).
    pub exe: Option<String>,
    /// Command line: arguments quoted for bash and joined by spaces (lossless, see
    /// [`crate::escape::shell_words`]).
    pub cmdline: Option<String>,
    /// Process id and its start time (clock ticks since boot): together unique across pid reuse.
    pub pid: u32,
    /// Start time of the process in clock ticks since boot (0 when unknown).
    pub start_time: u64,
    /// User id.
    pub uid: u32,
    /// User name, when resolvable.
    pub user: Option<String>,
    /// systemd unit (service or scope).
    pub unit: Option<String>,
    /// cgroup path (v2, or the v1 name=systemd hierarchy on hybrid hosts).
    pub cgroup: Option<String>,
    /// Container id (docker/podman/containerd), when the cgroup names one.
    pub container: Option<String>,
    /// How this was obtained.
    pub source: AppSource,
    /// Android identity of the UID (a packages.list was read and the UID is an app, SDK
    /// sandbox or isolated UID); left out of JSON otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub android: Option<super::android::AndroidIdentity>,
}
