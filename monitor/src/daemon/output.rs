//! The `flow` output of the sink: a flow record with its app, destination and names, as the
//! printer writes it (one JSON line per record with `--json`) and the journal stores it.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
};

use serde::{Serialize, Serializer, ser::SerializeStruct};
use serde_json::value::RawValue;

use super::Output;
use crate::{enrich::Destination, escape, identity::App, names::Names, tracker::FlowRecord};

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

impl FlowOutput {
    /// Every field of the line after the optional `type`, with `app` as given (the app itself,
    /// or its JSON rendered once by [`AppJson`]).
    fn fields<S: SerializeStruct, A: Serialize + ?Sized>(&self, s: &mut S, app: &A) -> Result<(), S::Error> {
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
            final_of_socket: _,
            release: _,
            resumed,
        } = &self.record;
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
        if *resumed {
            s.serialize_field("resumed", resumed)?;
        } else {
            s.skip_field("resumed")?;
        }
        s.serialize_field("app", app)?;
        s.serialize_field("destination", &self.destination)?;
        s.serialize_field("names", &self.names)
    }

    /// Number of fields [`Self::fields`] writes.
    fn len(&self) -> usize {
        21 + usize::from(self.record.rtt.is_some()) + usize::from(self.record.resumed)
    }
}

impl Serialize for FlowOutput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("FlowOutput", self.len())?;
        self.fields(&mut s, &*self.app)?;
        s.end()
    }
}

/// A flow as the JSON line of `Output::Flow` (`{"type":"flow",...}`, byte for byte), with the
/// app's JSON rendered beforehand ([`AppJson`]).
struct FlowLine<'a> {
    flow: &'a FlowOutput,
    /// The JSON of `flow.app`, escaped as the line is.
    app: &'a RawValue,
}

impl Serialize for FlowLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Output", 1 + self.flow.len())?;
        s.serialize_field("type", "flow")?;
        self.flow.fields(&mut s, self.app)?;
        s.end()
    }
}

/// Apps most recently rendered, kept by [`AppJson`].
const APPS_RENDERED: usize = 4096;

/// The JSON of each app, rendered once per shared `App` (the identity stage hands out one `Arc`
/// per process): escaping the app's strings (command line, cgroup path...) was the larger part
/// of a flow line. Keyed by the `Arc`'s address, which the entry's own clone keeps from being
/// reused; emptied when it holds `APPS_RENDERED` apps.
#[derive(Default)]
pub struct AppJson {
    rendered: HashMap<usize, (Arc<App>, Box<RawValue>)>,
}

impl AppJson {
    /// Writes `output` as one JSON line (without the newline), as
    /// `escape::json::to_writer(line, output)` does, rendering a flow's app once per app.
    ///
    /// # Errors
    /// When serialisation fails.
    pub fn line(&mut self, line: &mut Vec<u8>, output: &Output) -> serde_json::Result<()> {
        match output {
            Output::Flow(flow) => {
                let app = self.of(&flow.app)?;
                escape::json::to_writer(line, &FlowLine { flow, app })
            }
            other => escape::json::to_writer(line, other),
        }
    }

    /// The JSON of `app`, escaped as the line is.
    fn of(&mut self, app: &Arc<App>) -> serde_json::Result<&RawValue> {
        let key = Arc::as_ptr(app).addr();
        if self.rendered.len() >= APPS_RENDERED && !self.rendered.contains_key(&key) {
            self.rendered.clear();
        }
        let (_, json) = match self.rendered.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut json = Vec::with_capacity(256);
                escape::json::to_writer(&mut json, &**app)?;
                // serde_json writes UTF-8 only.
                let json = String::from_utf8(json).map_err(serde::ser::Error::custom)?;
                e.insert((Arc::clone(app), RawValue::from_string(json)?))
            }
        };
        Ok(json)
    }
}

#[cfg(test)]
mod tests;
