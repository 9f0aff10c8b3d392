//! Which socket cookies may already have records in `connections` ([`Cookies`]): the rollups
//! count distinct sockets, and the first record of a socket needs no table lookup.

use std::collections::BTreeSet;

/// Cookies [`Cookies`] remembers above its bound (a `BTreeSet<u64>`: well under 1 MiB).
const WRITTEN_COOKIES: usize = 32_768;
/// Lowest cookies forgotten at once when the set is full: one split of the tree every few
/// thousand records instead of one removal per record.
const FORGET_AT_ONCE: usize = 4096;

/// Which socket cookies may have records in `connections`, so that the first record of a socket
/// needs no table lookup: a cookie above `bound` that is not in `written` has none (`bound`:
/// every stored cookie at open; `u64::MAX`: always ask). Sockets close out of cookie order (a
/// server's accepted socket before its client's), so remembering only the highest cookie
/// written would send most of them to the table. When `written` is full, the lowest
/// [`FORGET_AT_ONCE`] cookies leave it and the bound rises to them.
#[derive(Debug)]
pub(crate) struct Cookies {
    bound: u64,
    written: BTreeSet<u64>,
}

impl Cookies {
    /// Every stored cookie is at most `bound`.
    pub(crate) fn above(bound: u64) -> Self {
        Self { bound, written: BTreeSet::new() }
    }

    /// Whether no record of `cookie` can be stored yet; remembers it as written.
    pub(crate) fn first_write(&mut self, cookie: u64) -> bool {
        if cookie.cast_signed() < 0 {
            // Stored as a negative integer: the table's order is not the cookies' order.
            self.bound = u64::MAX;
            self.written.clear();
        }
        if cookie <= self.bound {
            return false;
        }
        let first = self.written.insert(cookie);
        if self.written.len() > WRITTEN_COOKIES
            && let Some(&keep_from) = self.written.iter().nth(FORGET_AT_ONCE)
        {
            let kept = self.written.split_off(&keep_from);
            if let Some(&highest_forgotten) = self.written.last() {
                self.bound = self.bound.max(highest_forgotten);
            }
            self.written = kept;
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_new_once_above_the_bound_in_any_order() {
        let mut c = Cookies::above(100);
        assert!(!c.first_write(100), "stored at open");
        assert!(!c.first_write(7), "below the bound: ask the table");
        assert!(c.first_write(105));
        assert!(c.first_write(103), "out of order, still never written");
        assert!(!c.first_write(105), "written before");
        assert!(!c.first_write(103), "written before");
        assert!(c.first_write(104));
    }

    #[test]
    fn forgetting_the_lowest_cookies_raises_the_bound() {
        let mut c = Cookies::above(0);
        let n = u64::try_from(WRITTEN_COOKIES).unwrap();
        for cookie in 1..=n + 10 {
            assert!(c.first_write(cookie));
        }
        let forgotten = u64::try_from(FORGET_AT_ONCE).unwrap();
        assert_eq!(c.written.len(), WRITTEN_COOKIES + 10 - FORGET_AT_ONCE);
        assert_eq!(c.bound, forgotten, "the lowest left the set at once, when it overflowed");
        assert_eq!(c.written.first(), Some(&(forgotten + 1)));
        for cookie in 1..=n + 10 {
            assert!(!c.first_write(cookie), "{cookie} was written");
        }
        assert!(c.first_write(n + 11));
    }

    #[test]
    fn a_cookie_stored_negative_disables_the_shortcut() {
        let mut c = Cookies::above(0);
        assert!(c.first_write(5));
        assert!(!c.first_write(1 << 63));
        assert!(!c.first_write(6), "the table's order is no longer the cookies' order");
    }
}
