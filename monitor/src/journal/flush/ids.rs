//! The ids of the apps and databases a flush's records refer to.

use std::sync::Arc;

use foldhash::HashMap;
use jiff::Timestamp;
use rusqlite::{Transaction, params};
use serde_json::json;

use crate::journal::{
    buffer::{Buffer, Pending},
    chain,
    names::{self, int, ms},
};
use crate::{
    enrich::{DbRef, Role},
    identity::App,
};

/// `databases.id` of each (role, type, build) seen in this flush (the role by its stored name). Per record, the first few
/// databases of the flush are recognised by the address of their shared type name first (every
/// answer of one loaded database carries the same `Arc`), without hashing the name.
#[derive(Default)]
pub(super) struct DbIds {
    ids: HashMap<(&'static str, Arc<str>, u64), i64>,
    recent: Vec<(&'static str, Arc<str>, u64, i64)>,
}

/// Databases remembered by address (a country and an ASN database, and a few reloads).
const RECENT_DBS: usize = 4;

impl DbIds {
    pub(super) fn id_of(
        &mut self,
        tx: &Transaction<'_>,
        role: Role,
        db: Option<&(Arc<str>, u64)>,
    ) -> rusqlite::Result<Option<i64>> {
        let Some((database_type, build_epoch)) = db else {
            return Ok(None);
        };
        let role = names::name(role);
        let key = (role, database_type.clone(), *build_epoch);
        if let Some(id) = self.ids.get(&key) {
            return Ok(Some(*id));
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO databases (role, database_type, build_epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (role, database_type, build_epoch) DO UPDATE SET role = excluded.role
                 RETURNING id",
            )?
            .query_row(params![role, &**database_type, int(*build_epoch)], |row| row.get(0))?;
        self.ids.insert(key, id);
        Ok(Some(id))
    }

    pub(super) fn id_of_ref(
        &mut self,
        tx: &Transaction<'_>,
        role: Role,
        db: Option<&DbRef>,
    ) -> rusqlite::Result<Option<i64>> {
        let Some(d) = db else {
            return Ok(None);
        };
        let known = self.recent.iter().find(|(r, name, epoch, _)| {
            *r == names::name(role) && *epoch == d.build_epoch && Arc::ptr_eq(name, &d.database_type)
        });
        if let Some((.., id)) = known {
            return Ok(Some(*id));
        }
        let key = (d.database_type.clone(), d.build_epoch);
        let id = self.id_of(tx, role, Some(&key))?;
        if let Some(id) = id
            && self.recent.len() < RECENT_DBS
        {
            self.recent.push((names::name(role), d.database_type.clone(), d.build_epoch, id));
        }
        Ok(id)
    }
}

/// `apps.id` of `app` (pid and start time are per process: they stay in `connections`).
/// `apps.id` of every app of the buffered records: one upsert per app and flush (not per record),
/// with the latest time any of its records was seen. Looked up per record by the address of
/// its `Arc` (the buffer holds every one during the flush): one address hashed per record, the
/// fields of an app once per `Arc` (apps read from the kernel alone come in an `Arc` each).
/// With each id, the [`chain::app_digest`] of the app's identity (format-3 row digests cover it).
pub(super) fn app_ids(tx: &Transaction<'_>, buf: &Buffer) -> rusqlite::Result<HashMap<*const App, AppRef>> {
    let mut by_arc: HashMap<*const App, (&App, Timestamp)> = HashMap::default();
    for Pending { record, app, .. } in &buf.records {
        by_arc
            .entry(Arc::as_ptr(app))
            .and_modify(|(_, t)| *t = (*t).max(record.last_seen))
            .or_insert((&**app, record.last_seen));
    }
    let mut latest: HashMap<&App, Timestamp> = HashMap::default();
    for (app, seen) in by_arc.values() {
        latest.entry(*app).and_modify(|t| *t = (*t).max(*seen)).or_insert(*seen);
    }
    let ids = latest
        .into_iter()
        .map(|(app, seen)| Ok((app, app_id(tx, app, seen)?)))
        .collect::<rusqlite::Result<HashMap<&App, AppRef>>>()?;
    Ok(by_arc.into_iter().map(|(arc, (app, _))| (arc, ids.get(app).copied().unwrap_or_default())).collect())
}

/// An app's `apps.id` and the digest of its identity.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AppRef {
    pub id: i64,
    pub digest: [u8; chain::DIGEST_LEN],
}

fn app_id(tx: &Transaction<'_>, app: &App, seen: Timestamp) -> rusqlite::Result<AppRef> {
    let App { name, exe, cmdline, pid: _, start_time: _, uid, user, unit, cgroup, container, source, android } = app;
    let source = names::name(*source);
    let mut key = json!([name, exe, cmdline, uid, user, unit, cgroup, container, source]);
    // Appended only when present: identities of apps without it keep their earlier key.
    if let (Some(a), Some(list)) = (android, key.as_array_mut()) {
        list.push(json!([a.package, a.packages, a.user_id, a.app_id, names::name(a.kind)]));
    }
    let identity = key.to_string();
    // The stored identity is this text (the unique key an existing row was found by).
    let digest = chain::app_digest(Some(&identity));
    let (package, packages, user_id, app_id, kind) = match android {
        Some(a) => (
            a.package.as_deref(),
            Some(a.packages.join(" ")),
            Some(a.user_id),
            Some(a.app_id),
            Some(names::name(a.kind)),
        ),
        None => (None, None, None, None, None),
    };
    tx.prepare_cached(
        "INSERT INTO apps (identity, name, exe, cmdline, uid, user, unit, cgroup, container, source,
             first_seen_ms, last_seen_ms, android_package, android_packages, android_user_id, android_app_id,
             android_kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (identity) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)
         RETURNING id",
    )?
    .query_row(
        params![
            identity,
            name,
            exe,
            cmdline,
            uid,
            user,
            unit,
            cgroup,
            container,
            source,
            ms(seen),
            package,
            packages,
            user_id,
            app_id,
            kind
        ],
        |row| row.get(0),
    )
    .map(|id| AppRef { id, digest })
}
