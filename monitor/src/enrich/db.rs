//! One opened MMDB file and its role: opening, validation and schema-tolerant field reads.

use std::{
    fmt,
    fs::File,
    io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::{
    DbRef, Error,
    tree::{Shared, Tree, Walk},
};

/// Largest database file read (1 GiB): the largest public country/ASN files are a few hundred
/// MiB (DB-IP's full city file ~130 MiB). Larger files are refused with [`Error::Unusable`].
pub const MAX_DB_BYTES: u64 = 1 << 30;

/// Networks with data inspected when checking that a database has the fields of its role.
/// Bounded so that a hostile file cannot make start-up decode without limit.
const KIND_CHECK_RECORDS: usize = 256;

/// Most decoded records kept per database ([`RecordCache`]). A record is one country, or one
/// autonomous system with its organisation: the country files have a few hundred, the ASN files
/// ~100,000 (~60 bytes each here), so this bounds the ASN cache to a few MiB, reached only by a
/// host that talks to that many networks.
const RECORD_CACHE_ENTRIES: usize = 65_536;

/// Country code paths, tried in order: `GeoIP2` / DB-IP official, then ip-location-db.
const COUNTRY_PATHS: [&[PathElement<'static>]; 2] =
    [&[PathElement::Key("country"), PathElement::Key("iso_code")], &[PathElement::Key("country_code")]];

/// What a database is used for. Named by its serde derive, `country` or `asn` (as in
/// [`super::DbInfo::role`], the config keys and messages, through [`Display`](fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Country of an address.
    Country,
    /// Autonomous system (number, organisation) of an address.
    Asn,
}

impl Role {
    /// The record fields this role reads, for messages.
    #[must_use]
    pub fn fields(self) -> &'static str {
        match self {
            Self::Country => "`country.iso_code` or `country_code`",
            Self::Asn => "`autonomous_system_number`",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::variant::name(*self))
    }
}

/// Autonomous system answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsAnswer {
    /// Autonomous system number.
    pub asn: u32,
    /// Organisation, when the record has one (shared by every answer from the same record).
    pub org: Option<Arc<str>>,
}

/// The fields a country lookup reads, both schemas at once (serde skips the other fields,
/// without expanding their pointers).
#[derive(Deserialize)]
struct CountryRecord<'a> {
    /// `GeoIP2` / DB-IP official: `country.iso_code`.
    #[serde(borrow)]
    country: Option<CountryField<'a>>,
    /// ip-location-db: `country_code`.
    #[serde(borrow)]
    country_code: Option<&'a str>,
}

/// `country` of a [`CountryRecord`].
#[derive(Deserialize)]
struct CountryField<'a> {
    /// ISO 3166-1 alpha-2 code.
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

/// The fields an ASN lookup reads (GeoLite2-ASN layout), borrowed from the mapped file.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    /// Autonomous system number.
    autonomous_system_number: Option<u32>,
    /// Organisation.
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// Decoded answers by data-section offset: many networks share one record (every network of a
/// country, of an AS), so a record is decoded and its strings allocated once, and later lookups
/// that reach it only walk the tree. Emptied when full, like the answer cache.
#[derive(Debug)]
struct RecordCache<V> {
    /// Answer per record offset.
    map: foldhash::HashMap<usize, V>,
}

impl<V: Clone> RecordCache<V> {
    fn new() -> Self {
        Self { map: foldhash::HashMap::default() }
    }

    /// The cached answer of the record at `offset`.
    fn get(&self, offset: usize) -> Option<&V> {
        self.map.get(&offset)
    }

    /// The cached answer of the record at `offset`, else `decode`'s (cached when it succeeds).
    fn get_or_decode<E>(&mut self, offset: usize, decode: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(v) = self.map.get(&offset) {
            return Ok(v.clone());
        }
        let v = decode()?;
        if self.map.len() >= RECORD_CACHE_ENTRIES {
            self.map.clear();
        }
        self.map.insert(offset, v.clone());
        Ok(v)
    }
}

/// An opened, validated database.
#[derive(Debug)]
pub struct Database {
    /// Role it was opened for.
    pub role: Role,
    /// File it was read from.
    pub path: PathBuf,
    /// Provenance copied into every answer.
    pub db_ref: DbRef,
    /// The whole file, memory-mapped (read-only, private): its pages are the page cache's,
    /// shared and reclaimable, not heap.
    reader: Reader<Shared>,
    /// The same file's search tree, walked together with the other databases' to find cached
    /// records ([`super::tree`]); `None` for a layout the walker does not handle.
    tree: Option<Tree>,
    /// Country answers by record (country role).
    countries: RecordCache<Option<Arc<str>>>,
    /// ASN answers by record (ASN role).
    networks: RecordCache<Option<AsAnswer>>,
}

impl Database {
    /// Maps `path` ([`map_file`]) and checks that it serves `role`: IPv6-capable and carrying
    /// the role's fields. The mapping keeps the opened inode: a file replaced by rename (how
    /// installers and `cargo xtask geo` write) leaves this one intact until [`super::Enricher::reload`].
    /// `Reader::verify()` is deliberately not called: it rejects the DB-IP file (empty
    /// `description`) although every lookup works.
    ///
    /// # Errors
    /// [`Error::Open`] (missing, unreadable, not an MMDB), [`Error::Unusable`] (not a regular
    /// file, larger than [`MAX_DB_BYTES`]), [`Error::Ipv4Only`], [`Error::WrongKind`],
    /// [`Error::Corrupt`] (fails while being checked).
    pub fn open(role: Role, path: &Path) -> Result<Self, Error> {
        let file = crate::files::open_regular_capped(path, MAX_DB_BYTES).map_err(|e| match e {
            crate::files::Error::Io { source, .. } => {
                Error::Open { role, path: path.to_path_buf(), source: MaxMindDbError::Io(source) }
            }
            other => Error::Unusable { role, path: path.to_path_buf(), source: other },
        })?;
        let open_error = |source| Error::Open { role, path: path.to_path_buf(), source };
        let bytes = Shared(Arc::new(map_file(&file).map_err(|e| open_error(MaxMindDbError::Io(e)))?));
        let reader = Reader::from_source(bytes.clone()).map_err(open_error)?;
        let meta = reader.metadata();
        let tree = Tree::new(bytes, meta);
        let db_ref = DbRef { database_type: meta.database_type.as_str().into(), build_epoch: meta.build_epoch };
        if meta.ip_version != 6 {
            return Err(Error::Ipv4Only {
                role,
                path: path.to_path_buf(),
                database_type: db_ref.database_type.to_string(),
            });
        }
        let db = Self {
            role,
            path: path.to_path_buf(),
            db_ref,
            reader,
            tree,
            countries: RecordCache::new(),
            networks: RecordCache::new(),
        };
        db.check_kind()?;
        Ok(db)
    }

    /// Fails unless one of the first [`KIND_CHECK_RECORDS`] networks with data has the
    /// role's field (some records legitimately lack it, e.g. anycast networks). A record that
    /// does not decode as the role's schema counts as lacking the field.
    fn check_kind(&self) -> Result<(), Error> {
        let corrupt = |source| Error::Corrupt { role: self.role, path: self.path.clone(), source };
        let networks = self.reader.networks(WithinOptions::default()).map_err(corrupt)?;
        for item in networks.take(KIND_CHECK_RECORDS) {
            let item = item.map_err(corrupt)?;
            let found = match self.role {
                Role::Country => country_of(&item).is_ok_and(|c| c.is_some()),
                Role::Asn => asn_of(&item).is_ok_and(|a| a.is_some()),
            };
            if found {
                return Ok(());
            }
        }
        Err(Error::WrongKind {
            role: self.role,
            path: self.path.clone(),
            database_type: self.db_ref.database_type.to_string(),
        })
    }

    /// The search tree, for [`super::tree::walk_together`].
    #[must_use]
    pub fn tree(&self) -> Option<&Tree> {
        self.tree.as_ref()
    }

    /// Country code of `ip`; `Ok(None)` when not covered or the record has no country.
    /// `walk` is where `ip` leads in this database's tree ([`Walk::Unknown`]: not walked): a
    /// record decoded before is answered from the cache, anything else by the library.
    ///
    /// # Errors
    /// The file is corrupt where the lookup went.
    pub fn country(&mut self, ip: IpAddr, walk: Walk) -> Result<Option<Arc<str>>, MaxMindDbError> {
        match walk {
            Walk::NotFound => return Ok(None),
            Walk::Record(offset) => {
                if let Some(hit) = self.countries.get(offset) {
                    return Ok(hit.clone());
                }
            }
            Walk::Unknown => {}
        }
        let result = self.reader.lookup(ip)?;
        let Some(offset) = result.offset() else {
            return Ok(None);
        };
        self.countries.get_or_decode(offset, || Ok(country_of(&result)?.map(Arc::from)))
    }

    /// Autonomous system of `ip`; `Ok(None)` when not covered or the record has no number.
    /// `walk` as for [`country`](Self::country).
    ///
    /// # Errors
    /// The file is corrupt where the lookup went.
    pub fn asn(&mut self, ip: IpAddr, walk: Walk) -> Result<Option<AsAnswer>, MaxMindDbError> {
        match walk {
            Walk::NotFound => return Ok(None),
            Walk::Record(offset) => {
                if let Some(hit) = self.networks.get(offset) {
                    return Ok(hit.clone());
                }
            }
            Walk::Unknown => {}
        }
        let result = self.reader.lookup(ip)?;
        let Some(offset) = result.offset() else {
            return Ok(None);
        };
        self.networks.get_or_decode(offset, || asn_of(&result))
    }
}

/// Opens `path` (symlinks followed, as configured paths may be links) and maps it read-only.
/// Only a regular file is mapped (checked on the opened descriptor: no race with a rename): a
/// FIFO would block, a device could change under the mapping.
///
/// The mapping is `MAP_PRIVATE` of a file that the monitor never writes. What stays unsafe, and
/// is documented in the README: **truncating or rewriting the file in place** while the daemon
/// runs (e.g. `cp new.mmdb asn.mmdb` over it) makes reads of the vanished pages fault (`SIGBUS`)
/// or see mixed data. Replacing it by rename, as every installer does, is safe.
///
/// Only the pages lookups read stay resident, 4 KiB each: the file's cached pages that nothing
/// maps are dropped first (`POSIX_FADV_DONTNEED`) and the mapping is advised `MADV_RANDOM` (no
/// read-around), so each page is read alone when first touched. Otherwise a kernel that keeps a
/// recently written or read file in large folios (6.x) maps a whole folio, up to 2 MiB, for every
/// tree node touched: 8.1 MiB resident for an idle daemon with the default databases instead of
/// 0.03 MiB (as measured, README). Both are advice: a failure changes memory use only, never an answer.
fn map_file(file: &File) -> io::Result<Mmap> {
    if let Err(e) = nix::fcntl::posix_fadvise(file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED) {
        log::debug!("posix_fadvise(DONTNEED) of a geolocation database failed: {e}");
    }
    // SAFETY: a read-only private mapping of a regular file (checked on this descriptor by the
    // caller) the monitor never writes. Another process truncating or rewriting that inode in
    // place would break the `&[u8]` guarantee; the README requires replacement by rename, which
    // leaves this inode unchanged.
    let map = unsafe { Mmap::map(file) }?;
    if let Err(e) = map.advise(memmap2::Advice::Random) {
        log::debug!("madvise(MADV_RANDOM) of a geolocation database failed: {e}");
    }
    Ok(map)
}

/// Schema-tolerant country read: `country.iso_code`, else `country_code`. One decode of both
/// fields; a record that does not fit that shape (e.g. `country` is a string) is read path by
/// path, a path that does not fit is skipped, and its error is returned only when no path gives
/// a code.
fn country_of<'a>(result: &LookupResult<'a, Shared>) -> Result<Option<&'a str>, MaxMindDbError> {
    if let Ok(Some(record)) = result.decode::<CountryRecord<'a>>() {
        return Ok(record.country.and_then(|c| c.iso_code).or(record.country_code));
    }
    let mut first_error = None;
    for path in COUNTRY_PATHS {
        match result.decode_path::<&'a str>(path) {
            Ok(Some(code)) => return Ok(Some(code)),
            Ok(None) => {}
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    first_error.map_or(Ok(None), Err)
}

/// GeoLite2-ASN layout, also written by `cargo xtask geo convert`.
fn asn_of(result: &LookupResult<'_, Shared>) -> Result<Option<AsAnswer>, MaxMindDbError> {
    let Some(record) = result.decode::<AsnRecord<'_>>()? else {
        return Ok(None);
    };
    Ok(record
        .autonomous_system_number
        .map(|asn| AsAnswer { asn, org: record.autonomous_system_organization.map(Arc::from) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `DbInfo::role`, the databases table and messages, each parsing back.
    #[test]
    fn role_names_are_the_ones_in_use() {
        crate::variant::assert_names(&[(Role::Country, "country"), (Role::Asn, "asn")]);
        assert_eq!(Role::Asn.to_string(), "asn", "messages use the same name");
    }

    #[test]
    fn record_cache_decodes_once_is_bounded_and_keeps_no_errors() {
        let mut cache = RecordCache::<usize>::new();
        for offset in 0..RECORD_CACHE_ENTRIES {
            assert_eq!(cache.get_or_decode(offset, || Ok::<_, ()>(offset)), Ok(offset));
        }
        assert_eq!(cache.map.len(), RECORD_CACHE_ENTRIES);
        assert_eq!(cache.get_or_decode(3, || Err(())), Ok(3), "cached: not decoded again");
        assert_eq!(cache.get_or_decode(RECORD_CACHE_ENTRIES, || Ok::<_, ()>(7)), Ok(7));
        assert_eq!(cache.map.len(), 1, "emptied when full");
        assert_eq!(cache.get_or_decode(3, || Err(())), Err(()), "forgotten after the clear");
        assert_eq!(cache.map.len(), 1, "a failed decode is not cached");
    }
}
