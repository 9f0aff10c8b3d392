//! Owners found in /proc for flows the kernel could not name (sockets older than the monitor).

use super::{FlowKey, FlowOwner, OwnerQuery, Tracker, record::Owner};

impl Tracker {
    /// Sockets waiting for an owner lookup in /proc (taken once).
    pub fn take_owner_queries(&mut self) -> Vec<OwnerQuery> {
        std::mem::take(&mut self.owner_queries)
    }

    /// Sets the owner found in /proc for every flow of `cookie`, unless the kernel knows better.
    pub fn set_owner(&mut self, cookie: u64, owner: &Owner) {
        let socket = FlowKey { cookie, peer: None };
        // Its flows all ended (the answer came after the close): kept, it would stay (a review).
        if !self.flows.contains_key(&socket) && !self.peers.contains_key(&cookie) {
            return;
        }
        self.resolved.insert(cookie, owner.clone());
        let shared = self.owners.intern(FlowOwner::of(owner));
        let peers = self.peers.get(&cookie).into_iter().flatten();
        for key in std::iter::once(&socket).chain(peers) {
            if let Some(flow) = self.flows.get_mut(key)
                && owner.source > flow.owner.source
            {
                flow.owner = std::sync::Arc::clone(&shared);
            }
        }
    }
}
