//! Identity: who a socket belongs to when the kernel could not record it (sockets created before
//! the monitor started), found by walking /proc.
//!
//! Reads /proc only; never touches the flow table (the daemon hands results to the tracker).

mod sockets;

pub use sockets::find_socket_owner;
