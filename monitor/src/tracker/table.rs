//! The flow table: socket flows by cookie, peer flows (of unconnected UDP, ping and raw
//! sockets) by cookie and peer in a second map. Most flows are sockets, whose entry is then an
//! 8-byte key and a pointer (flows are boxed: a table sized for 100,000 sockets holds pointers,
//! not 232-byte flows, in its free slots).

use std::net::SocketAddr;

use super::{FlowKey, flow::Flow};

#[derive(Debug, Default)]
pub(super) struct Flows {
    sockets: foldhash::HashMap<u64, Box<Flow>>,
    peers: foldhash::HashMap<(u64, SocketAddr), Box<Flow>>,
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
        match key.peer {
            None => self.sockets.insert(key.cookie, Box::new(flow)),
            Some(peer) => self.peers.insert((key.cookie, peer), Box::new(flow)),
        };
    }

    pub(super) fn remove(&mut self, key: &FlowKey) -> Option<Box<Flow>> {
        match key.peer {
            None => self.sockets.remove(&key.cookie),
            Some(peer) => self.peers.remove(&(key.cookie, peer)),
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
    }
}
