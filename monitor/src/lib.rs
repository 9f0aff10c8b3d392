//! `monitor`: where does each app's data go?
//!
//! # Layout
//! One module per pipeline stage, talking through bounded channels:
//!
//! ```text
//! kernel programs ─ring buffer─▶ probe ──▶ tracker ──▶ daemon output (log / JSON)
//!                                             ▲
//!                              identity (/proc owners of older sockets)
//! ```
//!
//! - [`probe`]   loads/attaches the kernel programs, drains the ring buffer, reads statistics.
//! - [`tracker`]   flow table and flow records.
//! - [`identity`]   /proc lookups.
//! - [`claims`]   residency claims: verdicts with evidence over reports, live alerts.
//! - [`naming`]   host names of flows from the kernel's payload copies (parsers in [`names`]).
//! - [`daemon`]   the run loop and shutdown.
//! - [`metrics`]   the Prometheus endpoint (own thread; fed by the sink like the journal).
//! - [`diff`]   what changed per app between two reports (sessions, weeks, files).
//! - [`evidence`]   evidence bundles (report, records, databases, manifest) and their minisign signatures.
//! - [`settings`]   configuration.
//! - [`stats`]   completeness counters shared by the stages and the journal (a leaf).
//! - [`week`]   ISO week bounds in a time zone, for reports and rollups alike (a leaf).
//! - [`zone`]   a time zone looked up once by name, handed to the journal, reports and exports (a leaf).
//! - [`escape`]   escaping of foreign text (names, command lines) for each output format.
//! - [`files`]   reading input files (regular files only, size-capped).
//! - [`sys`]   the system calls `nix` does not wrap: pidfds and socket cookies (a leaf).
//! - [`world`]   country outlines and points (embedded Natural Earth data, a leaf).
//! - [`names`]   DNS, TLS and QUIC name parsers and the per-app name table (a leaf).
//! - [`variant`]   text names of enum variants, from their serde derive (a leaf).
//! - [`residency`]   physical plausibility of database countries from measured RTT (uses `world`).
#![warn(missing_docs)]

pub mod claims;
pub mod clock;
pub mod daemon;
pub mod diff;
pub mod enrich;
pub mod errors;
pub mod escape;
pub mod evidence;
pub mod files;
pub mod identity;
pub mod journal;
pub mod metrics;
pub mod names;
pub mod naming;
pub mod privileges;
pub mod probe;
pub mod report;
pub mod residency;
pub mod settings;
pub mod stats;
pub mod sys;
pub mod tracker;
pub mod variant;
pub mod week;
pub mod world;
pub mod zone;
