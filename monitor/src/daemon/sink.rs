//! Sink stage: gives every flow record its app (identity) and destination (enrichment), and hands
//! it to the consumers (printer, journal). Runs on its own thread: it reads /proc and database
//! files, which must not block the async runtime.

use std::sync::mpsc as std_mpsc;

use log::warn;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Output, Stats};
use crate::{
    identity::{App, Identities},
    tracker::FlowRecord,
};

/// Messages from the tracker loop, in event order (so a process is observed before its records).
#[derive(Debug)]
pub enum SinkMsg {
    /// A process was seen (read it from /proc now, while it is alive).
    Observe {
        /// Process id.
        tgid: u32,
        /// Boot-time creation of the socket that revealed it.
        created_ns: u64,
    },
    /// A flow record.
    Record(Box<FlowRecord>),
    /// Completeness counters.
    Stats(Stats),
    /// One second passed.
    Tick,
}

/// A flow record with its app, as printed and journaled.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOutput {
    /// The record.
    #[serde(flatten)]
    pub record: FlowRecord,
    /// The app it is charged to.
    pub app: App,
}

/// State of the sink thread.
pub struct Sink {
    /// Process identities.
    pub identities: Identities,
    /// Where printed output goes.
    pub out: mpsc::Sender<Output>,
}

impl Sink {
    /// Runs until the sender side is dropped; returns the identities (for their statistics).
    pub fn run(mut self, rx: std_mpsc::Receiver<SinkMsg>) -> Identities {
        while let Ok(msg) = rx.recv() {
            match msg {
                SinkMsg::Observe { tgid, created_ns } => self.identities.observe(tgid, created_ns),
                SinkMsg::Record(record) => {
                    let app = self.identities.app_for(&record.owner, record.first_seen);
                    self.emit(Output::Flow(Box::new(FlowOutput { record: *record, app })));
                }
                SinkMsg::Stats(stats) => self.emit(Output::Stats(stats)),
                SinkMsg::Tick => {}
            }
        }
        self.identities
    }

    fn emit(&self, output: Output) {
        if self.out.blocking_send(output).is_err() {
            warn!("output consumer gone; records are no longer printed");
        }
    }
}
