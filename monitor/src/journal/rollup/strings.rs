//! Interned strings of the rollup keys ([`Strings`]): a record's endpoint and service keys hold
//! small ids instead of owned strings, so folding a record neither allocates nor hashes and
//! compares the same strings several times.

use std::sync::Arc;

use foldhash::HashMap;

/// Distinct strings kept at most (a few MiB); past it [`Rollup::start_flush`](super::Rollup)
/// forgets them together with the keys that use them (the counted-records cache).
pub(crate) const MAX_STRINGS: usize = 65_536;

/// Id of an interned string (an index into [`Strings`]).
pub(crate) type StrId = u32;

/// Strings by id and ids by string. Ids are valid until [`Strings::clear`]. The empty string
/// (most names and destinations of a record are unknown, stored as '') is [`EMPTY`], without a
/// lookup.
#[derive(Debug)]
pub(crate) struct Strings {
    ids: HashMap<Arc<str>, StrId>,
    texts: Vec<Arc<str>>,
}

/// Id of the empty string.
pub(crate) const EMPTY: StrId = 0;

impl Default for Strings {
    fn default() -> Self {
        Self { ids: HashMap::default(), texts: vec![Arc::from("")] }
    }
}

impl Strings {
    /// The id of `text`, interned on first use.
    pub(crate) fn id(&mut self, text: &str) -> StrId {
        if text.is_empty() {
            return EMPTY;
        }
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        // More than u32::MAX strings never happens: the caller clears at MAX_STRINGS.
        let id = StrId::try_from(self.texts.len()).unwrap_or(StrId::MAX);
        let shared: Arc<str> = Arc::from(text);
        self.texts.push(Arc::clone(&shared));
        self.ids.insert(shared, id);
        id
    }

    /// The text of `id` ("" for an id not given out since the last clear: not reached).
    pub(crate) fn text(&self, id: StrId) -> &str {
        usize::try_from(id).ok().and_then(|i| self.texts.get(i)).map_or("", |t| t)
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// Forgets every string: ids given out before are invalid.
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.texts.truncate(1);
    }
}

#[cfg(test)]
mod tests {
    use super::Strings;

    #[test]
    fn equal_texts_share_an_id_and_read_back() {
        let mut s = Strings::default();
        let (a, b, empty) = (s.id("bench-load"), s.id("example.com"), s.id(""));
        assert_ne!(a, b);
        assert_eq!(s.id(&String::from("bench-load")), a);
        assert_eq!((s.text(a), s.text(b), s.text(empty), s.len()), ("bench-load", "example.com", "", 3));
        s.clear();
        assert_eq!((s.len(), s.text(a), s.text(empty)), (1, "", ""));
        assert_eq!(s.id("example.com"), 1);
        assert_eq!(s.text(1), "example.com");
    }
}
