//! The flow table: socket flows by cookie, peer flows (of unconnected UDP, ping and raw
//! sockets) by cookie and peer in a second map. Most flows are sockets, whose entry is then an
//! 8-byte key and a pointer (flows are boxed: a table sized for 100,000 sockets holds pointers,
//! not 184-byte flows, in its free slots). The boxes of removed flows are kept for the next
//! flows (up to [`SPARE_BOXES`]): a steady churn of short connections allocates nothing here.

use std::{net::SocketAddr, sync::Arc};

use super::{FlowKey, compact::FlowOwner, flow::Flow};

/// Boxes of removed flows kept for reuse: a 192-byte allocation each, about 400 KiB at most.
const SPARE_BOXES: usize = 2048;

#[derive(Debug)]
pub(super) struct Flows {
    sockets: foldhash::HashMap<u64, Box<Flow>>,
    peers: foldhash::HashMap<(u64, SocketAddr), Box<Flow>>,
    /// Boxes of removed flows, for [`Flows::insert`], each [vacated](Flow::vacate).
    #[expect(clippy::vec_box, reason = "the allocations themselves are kept, to be moved into the maps")]
    spare: Vec<Box<Flow>>,
    /// The owner of spare flows (no process).
    placeholder: Arc<FlowOwner>,
}

impl Default for Flows {
    fn default() -> Self {
        Self {
            sockets: foldhash::HashMap::default(),
            peers: foldhash::HashMap::default(),
            spare: Vec::new(),
            placeholder: Arc::new(FlowOwner::unknown(0)),
        }
    }
}

impl Flows {
    pub(super) fn get(&self, key: &FlowKey) -> Option<&Flow> {
        match key.peer {
            None => self.sockets.get(&key.cookie),
            Some(peer) => self.peers.get(&(key.cookie, peer)),
        }
        .map(|f| &**f)
    }

    pub(super) fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        match key.peer {
            None => self.sockets.get_mut(&key.cookie),
            Some(peer) => self.peers.get_mut(&(key.cookie, peer)),
        }
        .map(|f| &mut **f)
    }

    pub(super) fn contains_key(&self, key: &FlowKey) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn insert(&mut self, key: FlowKey, flow: Flow) {
        let boxed = match self.spare.pop() {
            Some(mut spare) => {
                *spare = flow;
                spare
            }
            None => Box::new(flow),
        };
        let replaced = match key.peer {
            None => self.sockets.insert(key.cookie, boxed),
            Some(peer) => self.peers.insert((key.cookie, peer), boxed),
        };
        self.keep(replaced);
    }

    /// Removes the flow of `key`; whether there was one.
    pub(super) fn remove(&mut self, key: &FlowKey) -> bool {
        let removed = match key.peer {
            None => self.sockets.remove(&key.cookie),
            Some(peer) => self.peers.remove(&(key.cookie, peer)),
        };
        let found = removed.is_some();
        self.keep(removed);
        found
    }

    /// Keeps the box of a removed flow for the next insert (up to [`SPARE_BOXES`]).
    fn keep(&mut self, removed: Option<Box<Flow>>) {
        if let Some(mut spare) = removed
            && self.spare.len() < SPARE_BOXES
        {
            spare.vacate(&self.placeholder);
            self.spare.push(spare);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sockets.len() + self.peers.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (FlowKey, &Flow)> {
        let sockets = self.sockets.iter().map(|(&cookie, f)| (FlowKey { cookie, peer: None }, &**f));
        let peers = self.peers.iter().map(|(&(cookie, peer), f)| (FlowKey { cookie, peer: Some(peer) }, &**f));
        sockets.chain(peers)
    }

    /// Every flow, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Flow> {
        self.sockets.values_mut().chain(self.peers.values_mut()).map(|f| &mut **f)
    }

    /// Socket flows (not peer flows), by cookie.
    pub(super) fn sockets(&self) -> impl Iterator<Item = (u64, &Flow)> {
        self.sockets.iter().map(|(&cookie, f)| (cookie, &**f))
    }

    pub(super) fn keys(&self) -> Vec<FlowKey> {
        self.iter().map(|(k, _)| k).collect()
    }

    pub(super) fn clear(&mut self) {
        self.sockets.clear();
        self.peers.clear();
        self.spare = Vec::new();
    }

    /// Boxes kept for reuse.
    #[cfg(test)]
    pub(super) fn spare(&self) -> usize {
        self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::event::{Event, EventKind};

    use super::{
        super::compact::{Addresses, Owners},
        *,
    };

    fn flow(owners: &mut Owners, cookie: u64) -> Flow {
        Flow::new(EventKind::Established, &Event { cookie, ..Event::default() }, owners, &mut Addresses::default())
    }

    #[test]
    fn boxes_of_removed_flows_serve_the_next_flows_up_to_the_bound() {
        let (mut table, mut owners) = (Flows::default(), Owners::default());
        let key = |cookie| FlowKey { cookie, peer: None };
        for cookie in 0..3 {
            table.insert(key(cookie), flow(&mut owners, cookie));
        }
        let addresses: Vec<*const Flow> = (0..3).map(|c| std::ptr::from_ref(table.get(&key(c)).unwrap())).collect();
        assert!(table.remove(&key(0)) && table.remove(&key(1)));
        assert!(!table.remove(&key(0)), "a flow is removed once");
        assert_eq!((table.len(), table.spare()), (1, 2));
        table.insert(key(10), flow(&mut owners, 10));
        table.insert(key(11), flow(&mut owners, 11));
        assert_eq!((table.len(), table.spare()), (3, 0));
        let reused: Vec<*const Flow> = [10, 11].map(|c| std::ptr::from_ref(table.get(&key(c)).unwrap())).into();
        assert!(reused.iter().all(|p| addresses[..2].contains(p)), "the removed flows' boxes are reused");
        assert!(table.get(&key(0)).is_none() && table.get(&key(2)).is_some());

        for cookie in 100..100 + SPARE_BOXES as u64 + 10 {
            table.insert(key(cookie), flow(&mut owners, cookie));
        }
        for cookie in 100..100 + SPARE_BOXES as u64 + 10 {
            table.remove(&key(cookie));
        }
        assert_eq!(table.spare(), SPARE_BOXES, "bounded");
    }
}
