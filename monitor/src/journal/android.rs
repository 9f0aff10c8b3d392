//! Android identities of apps (issue 12): the `android_*` columns of `apps`, read back per app
//! name for reports. Journals before schema 6 have none (an empty answer, not an error); an
//! `android_kind` this build does not know (a newer writer) is an error, not a guess.

use std::collections::BTreeMap;

use rusqlite::{Row, params};

use super::{Error, JournalReader, TimeRange, names};
use crate::identity::android::AndroidIdentity;

/// First schema with the `android_*` columns.
const ANDROID_SCHEMA: u32 = 6;

impl JournalReader {
    /// Android identities of the apps seen in `range` (of app `app` when given), by app name,
    /// each list sorted by user, app ID and package. An app name has several when, e.g., the
    /// same package runs for two Android users. App rows go with their connection records when
    /// those are purged.
    ///
    /// # Errors
    /// When the query fails.
    pub fn android_apps(
        &self,
        range: TimeRange,
        app: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<AndroidIdentity>>, Error> {
        if self.schema_version()? < ANDROID_SCHEMA {
            return Ok(BTreeMap::new());
        }
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT DISTINCT name, android_package, android_packages, android_user_id, android_app_id,
                     android_kind
                 FROM apps
                 WHERE android_app_id IS NOT NULL AND last_seen_ms >= ?1 AND first_seen_ms < ?2
                     AND (?3 IS NULL OR name = ?3)
                 ORDER BY name, android_user_id, android_app_id, android_package",
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![range.since.as_millisecond(), range.until.as_millisecond(), app], android_row)
            .map_err(|e| Error::read(self.path(), e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| Error::read(self.path(), e))?;
        let mut out: BTreeMap<String, Vec<AndroidIdentity>> = BTreeMap::new();
        for (name, identity) in rows {
            let list = out.entry(name).or_default();
            if !list.contains(&identity) {
                list.push(identity);
            }
        }
        Ok(out)
    }
}

fn android_row(row: &Row<'_>) -> rusqlite::Result<(String, AndroidIdentity)> {
    let packages: Option<String> = row.get(2)?;
    let kind: String = row.get(5)?;
    let identity = AndroidIdentity {
        package: row.get(1)?,
        packages: packages.unwrap_or_default().split_ascii_whitespace().map(str::to_owned).collect(),
        user_id: row.get::<_, Option<u32>>(3)?.unwrap_or_default(),
        app_id: row.get(4)?,
        kind: names::parse(5, &kind)?,
    };
    Ok((row.get(0)?, identity))
}
