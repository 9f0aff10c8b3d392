//! What a stored row costs SQLite, by the number of values it binds and the indexes it feeds
//! (ignored: a measurement, not a check). The journal's own file settings (`open::open_rw`:
//! WAL, `synchronous = FULL`, the checkpoint interval, cache and lookaside) and the flush's
//! pattern (32-row statements, 8,192 rows per transaction), on a table of its own beside the
//! schema. Run in release:
//! `cargo test --release -p monitor --lib row_cost_by_columns -- --ignored --nocapture`.

use std::fmt::Write as _;

use rusqlite::Connection;

use super::tempdir;
use crate::journal::open;

const ROWS: usize = 204_800;
const PER_STATEMENT: usize = 32;
const PER_TRANSACTION: usize = 8192;

/// The shape of a synthetic row: `columns` values (the first the id; every fourth a short text,
/// the others integers), and the indexes on it.
struct Shape {
    label: &'static str,
    columns: usize,
    /// `CREATE INDEX` statements on `row_cost`.
    indexes: &'static [&'static str],
}

/// An index whose key grows with the id: each row lands at the end (as `connections_time` did
/// before schema 17).
const APPENDED: &str = "CREATE INDEX row_cost_time ON row_cost (c3)";
/// A four-value key (as `connections_cookie`) whose rows land at scattered places for half of
/// them: the peers of one unconnected socket, one cookie and a peer port each in no order (the
/// UDP churn's server); the other half are new sockets, at the end.
const SCATTERED: &str = "CREATE INDEX row_cost_cookie ON row_cost (c2, c5, c6, c3)";

#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn row_cost_by_columns() {
    let shapes = [
        Shape { label: "53 values (a `connections` row)", columns: 53, indexes: &[] },
        Shape { label: "53 values, appended index", columns: 53, indexes: &[APPENDED] },
        Shape { label: "53 values, appended + scattered index", columns: 53, indexes: &[APPENDED, SCATTERED] },
        Shape { label: "33 values", columns: 33, indexes: &[] },
        Shape { label: "33 values, appended index", columns: 33, indexes: &[APPENDED] },
        Shape { label: "12 values", columns: 12, indexes: &[] },
    ];
    for shape in &shapes {
        let mut runs: Vec<f64> = (0..3).map(|_| cost_per_row(shape)).collect();
        runs.sort_by(f64::total_cmp);
        print_cost(shape.label, &runs);
    }
}

fn print_cost(label: &str, runs: &[f64]) {
    eprintln!("row cost, {label}: {:.2} µs of CPU per row (median of {runs:.2?})", runs[runs.len() / 2]);
}

/// CPU time of the inserting thread per row, in µs.
fn cost_per_row(shape: &Shape) -> f64 {
    let dir = tempdir();
    let (conn, _lock, _) = open::open_rw(&dir.path().join("journal.db")).expect("open journal");
    let mut ddl = String::from("CREATE TABLE row_cost (c0 INTEGER PRIMARY KEY");
    for c in 1..shape.columns {
        let kind = if c % 4 == 1 { "TEXT" } else { "INTEGER" };
        write!(ddl, ", c{c} {kind}").expect("to a string");
    }
    ddl.push_str(");");
    conn.execute_batch(&ddl).expect("create the table");
    for index in shape.indexes {
        conn.execute_batch(index).expect("create the index");
    }
    let started = crate::clock::thread_cpu();
    insert(&conn, shape.columns);
    drop(conn);
    (crate::clock::thread_cpu() - started).as_secs_f64() * 1e6 / ROWS as f64
}

/// Inserts [`ROWS`] rows as the flush does.
fn insert(conn: &Connection, columns: usize) {
    let names: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
    let row = format!("({})", vec!["?"; columns].join(", "));
    let sql = format!("INSERT INTO row_cost ({}) VALUES {}", names.join(", "), vec![row; PER_STATEMENT].join(", "));
    let texts: Vec<String> = (0..251).map(|i| format!("10.200.{}.{}", i % 7, i)).collect();
    let mut id = 0_i64;
    for _ in 0..ROWS / PER_TRANSACTION {
        let tx = conn.unchecked_transaction().expect("begin");
        {
            let mut stmt = tx.prepare_cached(&sql).expect("prepare");
            for _ in 0..PER_TRANSACTION / PER_STATEMENT {
                for r in 0..PER_STATEMENT {
                    id += 1;
                    for c in 0..columns {
                        let at = r * columns + c + 1;
                        let n = i64::try_from(c).expect("few columns");
                        let bound = match c {
                            0 => stmt.raw_bind_parameter(at, id),
                            // The scattered key as in the UDP churn: every other row a new socket
                            // (a rising cookie), the others peers of one socket ...
                            2 => stmt.raw_bind_parameter(at, if id % 2 == 0 { id } else { 7 }),
                            // ... at one address ...
                            5 => stmt.raw_bind_parameter(at, "10.200.1.1"),
                            // ... and a port each, in no order.
                            6 => stmt.raw_bind_parameter(at, 32_768 + (id * 7919) % 28_000),
                            c if c % 4 == 1 => {
                                let text = usize::try_from(id).expect("positive") % texts.len();
                                stmt.raw_bind_parameter(at, texts[text].as_str())
                            }
                            _ => stmt.raw_bind_parameter(at, id * 1000 + n),
                        };
                        bound.expect("bind");
                    }
                }
                stmt.raw_execute().expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
}
