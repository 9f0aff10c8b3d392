//! Where the descriptor snapshots ([`super::fdsnap`]) find sockets their owners no longer hold:
//! a socket handed over with `SCM_RIGHTS`, or kept by a child when its creator exited (a daemon
//! that forks away from its parent). The periodic refresh looks for a socket among its owner's
//! descriptors; one not there is looked for in every process's, at most once per
//! [`PASS_EVERY`] (a pass reads every process's descriptor table), and where it was found is
//! remembered, so later refreshes read it there (an adversarial pass: such an idle socket was
//! never refreshed while the daemon ran, and a `kill -9` lost everything it had counted).
//! Sockets a pass did not find anywhere (the kernel's own, owned by pid 0; one held only by an
//! io_uring's registered files or a message in flight) call for another pass only after
//! [`UNFOUND_RETRY`] (a review: such a socket made every refresh read every process's
//! descriptors once a minute, for as long as it lived; a check after it: one in a message
//! received later was never looked for again).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use super::fdsnap::OpenSocket;

/// Least time between two passes over every process for sockets not found with their owners.
pub const PASS_EVERY: Duration = Duration::from_secs(60);
/// How long a socket a pass did not find calls for no other pass by itself.
pub const UNFOUND_RETRY: Duration = Duration::from_secs(300);
/// Sockets whose holder is remembered; all are forgotten when more are found (then the next
/// pass finds them again).
const MAX_REMEMBERED: usize = 65_536;

/// Remembered holders and the time of the last pass.
#[derive(Debug, Default)]
pub struct Holders {
    found: HashMap<u64, u32>,
    last_pass: Option<Instant>,
    /// Sockets a pass looked for and did not find, and when.
    unfound: HashMap<u64, Instant>,
}

impl Holders {
    /// `sockets` with each one's process replaced by where it was last found, if that is
    /// remembered (`None`: nothing is, the owners stand).
    pub fn redirect(&self, sockets: &[OpenSocket]) -> Option<Vec<OpenSocket>> {
        if self.found.is_empty() {
            return None;
        }
        let holder = |s: &OpenSocket| OpenSocket { tgid: self.found.get(&s.cookie).copied().unwrap_or(s.tgid), ..*s };
        Some(sockets.iter().map(holder).collect())
    }

    /// Whether a pass over every process for `missed` (sockets not found with their owners) is
    /// due at `now`: one of them no pass has looked for in the last [`UNFOUND_RETRY`], and none
    /// was made in the last [`PASS_EVERY`]; if so, it counts as made.
    pub fn pass_due(&mut self, missed: &HashSet<u64>, now: Instant) -> bool {
        let looked_for =
            |cookie| self.unfound.get(cookie).is_some_and(|at| now.saturating_duration_since(*at) < UNFOUND_RETRY);
        let due = self.last_pass.is_none_or(|last| now.saturating_duration_since(last) >= PASS_EVERY)
            && missed.iter().any(|cookie| !looked_for(cookie));
        if due {
            self.last_pass = Some(now);
        }
        due
    }

    /// What a pass at `now` left not found anywhere (the others are forgotten).
    pub fn unfound(&mut self, missed: &HashSet<u64>, now: Instant) {
        self.unfound.retain(|cookie, _| missed.contains(cookie));
        for cookie in missed {
            self.unfound.insert(*cookie, now);
        }
    }

    /// Socket `cookie` was found among the descriptors of process `tgid`.
    pub fn found(&mut self, cookie: u64, tgid: u32) {
        if self.found.len() >= MAX_REMEMBERED {
            self.found.clear();
        }
        self.found.insert(cookie, tgid);
    }

    /// Socket `cookie` was not found where it was looked for (released, or handed on again).
    pub fn lost(&mut self, cookie: u64) {
        self.found.remove(&cookie);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_found_elsewhere_is_looked_for_there_until_it_is_not() {
        let mut h = Holders::default();
        let sockets = [OpenSocket { cookie: 1, tgid: 10 }, OpenSocket { cookie: 2, tgid: 10 }];
        assert_eq!(h.redirect(&sockets), None, "nothing remembered: the owners");
        h.found(2, 20);
        let redirected = h.redirect(&sockets).expect("one remembered");
        assert_eq!(redirected, [OpenSocket { cookie: 1, tgid: 10 }, OpenSocket { cookie: 2, tgid: 20 }]);
        h.lost(2);
        assert_eq!(h.redirect(&sockets), None);
    }

    #[test]
    fn a_pass_over_every_process_is_due_at_most_once_a_minute_for_sockets_not_looked_for() {
        let mut h = Holders::default();
        let t0 = Instant::now();
        let missed: HashSet<u64> = [1, 2].into();
        assert!(h.pass_due(&missed, t0), "the first");
        assert!(!h.pass_due(&missed, t0 + Duration::from_secs(59)));
        // The pass found neither: they alone call for another pass only after a while (a
        // socket in a message may be received later).
        h.unfound(&missed, t0);
        assert!(!h.pass_due(&missed, t0 + PASS_EVERY));
        assert!(!h.pass_due(&[1].into(), t0 + UNFOUND_RETRY - Duration::from_secs(1)));
        // Another one missed: due once a minute has passed.
        assert!(h.pass_due(&[1, 3].into(), t0 + PASS_EVERY));
        assert!(!h.pass_due(&[1, 4].into(), t0 + PASS_EVERY + Duration::from_secs(1)));
        // That pass found 3 and not 1: 1 is looked for again after the retry time.
        h.unfound(&[1].into(), t0 + PASS_EVERY);
        assert!(!h.pass_due(&[1].into(), t0 + UNFOUND_RETRY));
        assert!(h.pass_due(&[1].into(), t0 + PASS_EVERY + UNFOUND_RETRY));
    }
}
