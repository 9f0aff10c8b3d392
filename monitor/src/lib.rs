//! `monitor`: where does each app's data go?
//!
//! # Layout
//! One module per pipeline stage; data flows forward only, through typed messages and bounded
//! queues, and no stage imports one downstream of it:
//!
//! ```text
//! kernel programs ─ring buffer─▶ probe ─▶ tracker ─▶ identity ─▶ naming ─▶ enrich ─▶ journal ─▶ report ─┬─▶ render (text, markdown, csv, json, html)
//!  (monitor-ebpf)   events,      flows     app       host       country,   rows,       model   ├─▶ claims (verdicts, evidence, alerts)
//!                   copies                            names      ASN                            ├─▶ diff, evidence
//!                                                                                               └─▶ export (weekly files)
//! ```
//!
//! The [`daemon`] wires the stages (the sink thread runs identity → naming → enrich → journal,
//! and feeds [`metrics`] and live claim alerts); `cli` (in the binary, `main.rs`) is the command line on top.
//!
//! Stages, in pipeline order:
//! - [`probe`]   loads/attaches the kernel programs, drains the ring buffer, reads statistics.
//! - [`tracker`]   flow table and flow records.
//! - [`identity`]   apps from /proc (and Android packages); owners of sockets older than the monitor.
//! - [`naming`]   host names of flows from the kernel's payload copies (parsers in [`names`]).
//! - [`enrich`]   country, ASN and organisation of each destination, with provenance.
//! - [`residency`]   physical plausibility of database countries from measured RTT (uses [`world`]).
//! - [`journal`]   the SQLite journal: records, residency rows, rollups, sessions, hash chain.
//! - [`report`]   weekly and ranged reports from the journal, rendered in each format; exports.
//! - [`claims`]   residency claims: verdicts with evidence over reports, live alerts.
//! - [`diff`]   what changed per app between two reports (sessions, weeks, files).
//! - [`evidence`]   evidence bundles (report, records, databases, manifest) and their minisign signatures.
//! - [`metrics`]   the Prometheus endpoint (own thread; fed by the sink like the journal).
//! - [`settings`]   configuration, validated once into the typed settings every command uses
//!   (it holds each stage's settings, so it sits above them).
//! - [`daemon`]   start-up, the pipeline loop and shutdown, wired from the settings.
//! - [`privileges`]   the capability check done before anything else.
//! - `cli` (in the binary)   the commands.
//!
//! `tests/layering.rs` checks this order against every `crate::` path in the sources.
//!
//! Shared leaves (they import no stage):
//! - [`stats`]   completeness counters the stages produce and the journal stores.
//! - [`week`]   ISO week bounds in a time zone, for reports and rollups alike.
//! - [`zone`]   a time zone looked up once by name, handed to the journal, reports and exports.
//! - [`variant`]   text names of enum variants, from their serde derive.
//! - [`names`]   DNS, TLS and QUIC name parsers and the per-app name table.
//! - [`escape`]   escaping of foreign text (names, command lines) for each output format.
//! - [`files`]   reading input files (regular files only, size-capped).
//! - [`sys`]   the system calls `nix` does not wrap: pidfds, socket cookies, `TCP_INFO`.
//! - [`world`]   country outlines and points (embedded Natural Earth data).
//! - [`clock`]   kernel timestamps (`CLOCK_BOOTTIME`) to wall-clock time.
//! - [`errors`]   error text helpers.
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
