//! Identity: who a socket belongs to when the kernel could not record it (sockets created before
//! the monitor started), and which app a process is.
//!
//! Reads /proc only; never touches the flow table (the daemon hands results to the tracker).

pub mod android;
mod app;
pub mod emulator;
mod process;
pub mod rules;
mod sockets;

pub use app::{App, AppSource, UNKNOWN_APP};
pub use process::{Identities, IdentityStats, container_of, unit_of};
pub use rules::{AppRule, AppRules};
pub use sockets::{Holder, InetSocket, ProcessInfo, SocketScan};
