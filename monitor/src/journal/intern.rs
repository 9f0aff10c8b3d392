//! The values a connection record shares with others, stored once (schema 14): its shape, owner,
//! destination and names each live in a table of their own, and `connection_rows` holds an id
//! into each. The writer remembers the id of every combination it wrote or looked up, keyed by
//! the combination's bytes as the hash chain encodes them ([`super::chain::encode`]), so a
//! record costs one hash lookup per group, and SQLite a query only for a combination new to this
//! writer.

use foldhash::HashMap;
use rusqlite::{
    Transaction,
    types::{Value, ValueRef},
};

use super::chain::DIGEST_LEN;

/// A group of `connections` columns stored in a table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    Shape,
    Owner,
    Destination,
    Names,
}

impl Group {
    pub(super) const ALL: [Self; 4] = [Self::Shape, Self::Owner, Self::Destination, Self::Names];

    pub(super) const fn index(self) -> usize {
        self as usize
    }

    /// The column of `connection_rows` holding the group's id.
    pub(super) const fn id_column(self) -> &'static str {
        match self {
            Self::Shape => "shape_id",
            Self::Owner => "owner_id",
            Self::Destination => "destination_id",
            Self::Names => "names_id",
        }
    }

    /// The table and its columns, in the order [`super::flush`] pushes them.
    pub(super) const fn table(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Self::Shape => {
                ("connection_shapes", &["event", "protocol", "direction", "payload_source", "complete", "ip_protocol"])
            }
            Self::Owner => (
                "connection_owners",
                &[
                    "app_id",
                    "app_pid",
                    "app_start_time",
                    "owner_tgid",
                    "owner_pid",
                    "owner_uid",
                    "owner_gid",
                    "owner_comm",
                    "owner_cgroup_id",
                    "owner_source",
                ],
            ),
            Self::Destination => (
                "connection_destinations",
                &["scope", "country", "asn", "as_org", "country_db", "asn_db", "consensus", "answers_id"],
            ),
            Self::Names => {
                ("connection_names", &["hostname", "registrable_domain", "name_source", "dns_name", "ech_outer"])
            }
        }
    }

    /// The combination stored as a NULL id (none for shapes and owners): a destination of all
    /// NULLs (no remote address), names of an unnamed flow. The view `connections` reads them
    /// back as these values.
    fn null_values(self) -> Option<Vec<ValueRef<'static>>> {
        match self {
            Self::Shape | Self::Owner => None,
            Self::Destination => Some(vec![ValueRef::Null; 8]),
            Self::Names => Some(vec![
                ValueRef::Null,
                ValueRef::Null,
                ValueRef::Text(b"none"),
                ValueRef::Null,
                ValueRef::Integer(0),
            ]),
        }
    }
}

/// Where each value of [`super::chain::hashed_columns`] goes: into `connection_rows` (`None`), or
/// into the key of the group whose table has a column of its name. Used by the flush to bind a
/// record, and by the hash chain to digest a row read back (format 2).
pub(super) static ROUTES: std::sync::LazyLock<Vec<Option<Group>>> = std::sync::LazyLock::new(|| {
    super::chain::hashed_columns().map(|name| Group::ALL.into_iter().find(|g| g.table().1.contains(&name))).collect()
});

/// Combinations remembered per group before the memory is given back (a new combination past
/// this many starts over: ids are then looked up again, nothing is lost or duplicated).
const REMEMBERED: usize = 4096;

/// A group digest (first bytes of a SHA-256, as a row digest).
type GroupDigest = [u8; DIGEST_LEN];
/// A combination's id (`None`: the group's NULL combination) and group digest.
type Known = (Option<i64>, GroupDigest);

/// Ids of the combinations this writer knows, per group, with their group digests (the hash
/// chain's format 2: a row digest covers the digest of each of its combinations, computed once
/// per combination, not once per row).
#[derive(Debug)]
pub(super) struct Interned {
    ids: [HashMap<Box<[u8]>, Known>; 4],
    /// Encoded [`Group::null_values`], per group, with their digest once computed.
    null_keys: [Option<(Vec<u8>, Option<GroupDigest>)>; 4],
    /// The bytes of a group digest being computed.
    digested: Vec<u8>,
    /// Lookups that went to SQLite.
    pub(super) queries: u64,
}

impl Default for Interned {
    fn default() -> Self {
        let null_keys = Group::ALL.map(|g| {
            g.null_values().map(|values| {
                let mut key = Vec::new();
                for v in values {
                    super::chain::encode(&mut key, v);
                }
                (key, None)
            })
        });
        Self { ids: Default::default(), null_keys, digested: Vec::new(), queries: 0 }
    }
}

impl Interned {
    /// Forgets every id: call when a transaction that may have added rows to the group tables
    /// rolled back, and after rows were deleted from them.
    pub(super) fn forget(&mut self) {
        for ids in &mut self.ids {
            ids.clear();
        }
    }

    /// The id of the combination encoded in `key` (`None`: the group's NULL combination),
    /// inserting it into the group's table when it is not there, and its group digest: of
    /// the group's table name (as [`super::chain::start_row`] writes it) and the bytes `digested`
    /// appends (the values as the view reads
    /// them back), computed when the combination is new to this writer.
    pub(super) fn id(
        &mut self,
        tx: &Transaction<'_>,
        group: Group,
        key: &[u8],
        digested: impl FnOnce(&mut Vec<u8>),
    ) -> rusqlite::Result<Known> {
        let digest = |bytes: &mut Vec<u8>| {
            super::chain::start_row(bytes, group.table().0);
            digested(bytes);
            super::chain::digest_of(bytes)
        };
        if let Some((null, known)) = &mut self.null_keys[group.index()]
            && null.as_slice() == key
        {
            let d = *known.get_or_insert_with(|| digest(&mut self.digested));
            return Ok((None, d));
        }
        let ids = &mut self.ids[group.index()];
        if let Some(known) = ids.get(key) {
            return Ok(*known);
        }
        let d = digest(&mut self.digested);
        self.queries += 1;
        let values = decode(key)?;
        let (table, columns) = group.table();
        let found: Option<i64> = {
            let wanted: Vec<String> = columns.iter().enumerate().map(|(i, c)| format!("{c} IS ?{}", i + 1)).collect();
            let sql = format!("SELECT id FROM {table} WHERE {} LIMIT 1", wanted.join(" AND "));
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(&values))?;
            rows.next()?.map(|row| row.get(0)).transpose()?
        };
        let id = match found {
            Some(id) => id,
            None => {
                let marks = vec!["?"; columns.len()].join(", ");
                let sql = format!("INSERT INTO {table} ({}) VALUES ({marks}) RETURNING id", columns.join(", "));
                tx.prepare_cached(&sql)?.query_row(rusqlite::params_from_iter(&values), |row| row.get(0))?
            }
        };
        if ids.len() >= REMEMBERED {
            ids.clear();
        }
        ids.insert(key.into(), (Some(id), d));
        Ok((Some(id), d))
    }
}

/// The values of a key written by [`super::chain::encode`].
fn decode(mut key: &[u8]) -> rusqlite::Result<Vec<Value>> {
    let bad = || rusqlite::Error::ToSqlConversionFailure("malformed interned key".into());
    let mut values = Vec::new();
    while let Some((&tag, rest)) = key.split_first() {
        let (value, rest) = match tag {
            0 => (Value::Null, rest),
            1 | 2 => {
                let (bytes, rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
                let value = if tag == 1 {
                    Value::Integer(i64::from_be_bytes(*bytes))
                } else {
                    Value::Real(f64::from_bits(u64::from_be_bytes(*bytes)))
                };
                (value, rest)
            }
            3 | 4 => {
                let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
                let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
                let (bytes, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
                let value = if tag == 3 {
                    Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?)
                } else {
                    Value::Blob(bytes.to_vec())
                };
                (value, rest)
            }
            _ => return Err(bad()),
        };
        values.push(value);
        key = rest;
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_to_the_values_encoded() {
        let values = [
            ValueRef::Null,
            ValueRef::Integer(-7),
            ValueRef::Real(1.5),
            ValueRef::Text("comm \u{1f600}".as_bytes()),
            ValueRef::Blob(&[0, 1, 2]),
        ];
        let mut key = Vec::new();
        for v in values {
            super::super::chain::encode(&mut key, v);
        }
        let decoded = decode(&key).expect("decodes");
        let back: Vec<ValueRef<'_>> = decoded.iter().map(ValueRef::from).collect();
        assert_eq!(back, values);
        assert!(decode(&key[..key.len() - 1]).is_err(), "a cut key is refused");
        assert!(decode(&[9]).is_err(), "an unknown tag is refused");
    }
}
