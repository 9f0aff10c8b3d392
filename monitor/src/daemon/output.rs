//! The `flow` output of the sink: a flow record with its app, destination and names, as the
//! printer writes it (one JSON line per record with `--json`) and the journal stores it.

use std::sync::Arc;

use serde::{Serialize, Serializer, ser::SerializeStruct};

use crate::{enrich::Destination, identity::App, names::Names, tracker::FlowRecord};

/// A flow record with its app and destination, as printed and journaled.
///
/// Its JSON is the record's fields followed by `app`, `destination` and `names` (as a derived
/// impl with `#[serde(flatten)]` on `record` wrote it), serialised by hand as one struct: flatten
/// goes through serde's map path, ~9 % slower per line (one line per flow record with `--json`;
/// the tests compare the bytes with the derived form).
#[derive(Debug, Clone)]
pub struct FlowOutput {
    /// The record.
    pub record: FlowRecord,
    /// The app it is charged to.
    pub app: Arc<App>,
    /// Country and network owner of the remote address (`None` without a remote address).
    pub destination: Option<Destination>,
    /// Host name of the flow and where it came from.
    pub names: Names,
}

impl Serialize for FlowOutput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Exhaustive: a field added to `FlowRecord` must be added here (in declaration order).
        let FlowRecord {
            event,
            cookie,
            owner,
            protocol,
            ip_protocol,
            direction,
            local,
            remote,
            payload,
            payload_source,
            payload_sources,
            wire,
            delta_payload,
            delta_wire,
            first_seen,
            last_seen,
            closed,
            complete,
            rtt,
        } = &self.record;
        let mut s = serializer.serialize_struct("FlowOutput", 21 + usize::from(rtt.is_some()))?;
        s.serialize_field("event", event)?;
        s.serialize_field("cookie", cookie)?;
        s.serialize_field("owner", owner)?;
        s.serialize_field("protocol", protocol)?;
        s.serialize_field("ip_protocol", ip_protocol)?;
        s.serialize_field("direction", direction)?;
        s.serialize_field("local", local)?;
        s.serialize_field("remote", remote)?;
        s.serialize_field("payload", payload)?;
        s.serialize_field("payload_source", payload_source)?;
        s.serialize_field("payload_sources", payload_sources)?;
        s.serialize_field("wire", wire)?;
        s.serialize_field("delta_payload", delta_payload)?;
        s.serialize_field("delta_wire", delta_wire)?;
        s.serialize_field("first_seen", first_seen)?;
        s.serialize_field("last_seen", last_seen)?;
        s.serialize_field("closed", closed)?;
        s.serialize_field("complete", complete)?;
        match rtt {
            Some(rtt) => s.serialize_field("rtt", rtt)?,
            None => s.skip_field("rtt")?,
        }
        s.serialize_field("app", &self.app)?;
        s.serialize_field("destination", &self.destination)?;
        s.serialize_field("names", &self.names)?;
        s.end()
    }
}

#[cfg(test)]
mod tests;
