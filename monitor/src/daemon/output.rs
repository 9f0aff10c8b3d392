//! The `flow` output of the sink: a flow record with its app, destination and names, as the
//! printer writes it (one JSON line per record with `--json`) and the journal stores it.

use std::sync::Arc;

use serde::Serialize;

use crate::{enrich::Destination, identity::App, names::Names, tracker::FlowRecord};

/// A flow record with its app and destination, as printed and journaled.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOutput {
    /// The record.
    #[serde(flatten)]
    pub record: FlowRecord,
    /// The app it is charged to.
    pub app: Arc<App>,
    /// Country and network owner of the remote address (`None` without a remote address).
    pub destination: Option<Destination>,
    /// Host name of the flow and where it came from.
    pub names: Names,
}

#[cfg(test)]
mod tests;
