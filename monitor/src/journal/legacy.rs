//! Reading journals written before the newest migrations without changing them: readers open
//! the file read-only, so columns added by later migrations (`ALTER TABLE … ADD COLUMN`) may be
//! missing. For each such table a TEMP view of the same name (temp objects shadow the main
//! schema's for unqualified names, and live only in this connection) adds the missing columns
//! as NULL, which is what rows written before the migration read as anyway. The file is never
//! written; the daemon migrates it when it next opens it for writing.

use rusqlite::Connection;

/// Columns added to existing tables by migrations (`ALTER TABLE … ADD COLUMN`), per table. A
/// test checks the list against every such statement in `schema.rs`.
const LATE_COLUMNS: &[(&str, &[&str])] = &[
    ("daemon_state", &["degradations"]),
    ("batches", &["row_format"]),
    ("apps", &["android_package", "android_packages", "android_user_id", "android_app_id", "android_kind"]),
    (
        "connections",
        &[
            "ip_protocol",
            "hostname",
            "registrable_domain",
            "name_source",
            "dns_name",
            "ech_outer",
            "rtt_min_us",
            "rtt_srtt_us",
            "consensus",
            "country_answers",
            "answers_id",
        ],
    ),
    ("stats", &["copies_submitted", "copies_lost", "names_malformed", "names_learned"]),
    ("endpoint_week", &["consensus", "answers_id", "rtt_min_us"]),
    // Added by schema 15 to a schema 14 written before the column was; only the writer reads it.
    ("connection_rows", &["lookup"]),
];

/// Tables added by later migrations that readers of older files look into, with an empty TEMP
/// view of their columns (`answer_sets`, schema 11: the answers of connection records;
/// `connection_spans`, schema 17: without spans a time range reads every record id, and the
/// older file still has its time index).
const LATE_TABLES: &[(&str, &str)] = &[
    ("answer_sets", "SELECT 0 AS id, '' AS text WHERE 0"),
    (
        "connection_spans",
        "SELECT 0 AS id, 0 AS first_id, 0 AS last_id, 0 AS min_time_ms, 0 AS max_time_ms, 0 AS max_before_ms,
             0 AS min_after_ms WHERE 0",
    ),
];

/// Shadows every table that lacks late columns with a TEMP view supplying them as NULL, and
/// stands an empty TEMP view in for each missing [`LATE_TABLES`] table.
pub(super) fn shadow_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, empty) in LATE_TABLES {
        let present: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("CREATE TEMP VIEW {table} AS {empty};"))?;
        }
    }
    for (table, late) in LATE_COLUMNS {
        let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}', 'main')"))?;
        let present: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        if present.is_empty() {
            continue;
        }
        let missing: Vec<&str> = late.iter().copied().filter(|c| !present.iter().any(|p| p == c)).collect();
        if missing.is_empty() {
            continue;
        }
        let extra: String = missing.iter().map(|c| format!(", NULL AS {c}")).collect();
        conn.execute_batch(&format!("CREATE TEMP VIEW {table} AS SELECT *{extra} FROM main.{table};"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_tables_read_with_null_late_columns_and_the_file_is_unchanged() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.db");
        let rw = Connection::open(&path).expect("open");
        rw.execute_batch("CREATE TABLE connections (id INTEGER PRIMARY KEY, remote_ip TEXT); INSERT INTO connections (remote_ip) VALUES ('192.0.2.1');")
            .expect("old schema");
        drop(rw);
        let ro = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("ro");
        shadow_missing_columns(&ro).expect("shadow");
        let (ip, host, rtt): (String, Option<String>, Option<i64>) = ro
            .query_row("SELECT remote_ip, hostname, rtt_min_us FROM connections", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("late columns read as NULL");
        assert_eq!((ip.as_str(), host, rtt), ("192.0.2.1", None, None));
        let main_cols: i64 = ro
            .query_row("SELECT COUNT(*) FROM pragma_table_info('connections', 'main')", [], |r| r.get(0))
            .expect("main");
        assert_eq!(main_cols, 2, "the file itself is not changed");
        let answers: Option<String> = ro
            .query_row(concat!("SELECT ", super::super::truth::answers_text!("c"), " FROM connections c"), [], |r| {
                r.get(0)
            })
            .expect("a missing answer_sets table reads as empty");
        assert_eq!(answers, None);
    }

    #[test]
    fn a_current_table_is_left_alone() {
        let conn = Connection::open_in_memory().expect("mem");
        let cols: Vec<&str> = LATE_COLUMNS.iter().find(|(t, _)| *t == "connections").expect("listed").1.to_vec();
        conn.execute_batch(&format!(
            "CREATE TABLE connections (id INTEGER, {}); CREATE TABLE answer_sets (id INTEGER PRIMARY KEY, text TEXT);
             CREATE TABLE connection_spans (id INTEGER PRIMARY KEY);",
            cols.join(", ")
        ))
        .expect("tables");
        shadow_missing_columns(&conn).expect("shadow");
        let views: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_temp_master WHERE type = 'view'", [], |r| r.get(0))
            .expect("temp");
        assert_eq!(views, 0);
    }

    #[test]
    fn every_added_column_of_the_migrations_is_listed() {
        let schema = include_str!("schema.rs");
        for line in schema.lines().map(str::trim).filter(|l| l.starts_with("ALTER TABLE") && l.contains(" ADD COLUMN "))
        {
            let words: Vec<&str> = line.trim_end_matches(';').split_whitespace().collect();
            let (table, column) = (words[2], words[5]);
            let listed = LATE_COLUMNS.iter().any(|(t, cols)| *t == table && cols.contains(&column));
            assert!(listed, "{table}.{column} is added by a migration but missing from LATE_COLUMNS");
        }
    }

    #[test]
    fn an_old_daemon_state_reads_without_degradations() {
        let conn = Connection::open_in_memory().expect("mem");
        conn.execute_batch(
            "CREATE TABLE daemon_state (id INTEGER PRIMARY KEY, pid INTEGER); INSERT INTO daemon_state VALUES (1, 7);",
        )
        .expect("old schema");
        shadow_missing_columns(&conn).expect("shadow");
        let (pid, d): (i64, Option<String>) = conn
            .query_row("SELECT pid, degradations FROM daemon_state", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("late column read as NULL");
        assert_eq!((pid, d), (7, None));
    }
}
