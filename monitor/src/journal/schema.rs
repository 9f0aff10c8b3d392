//! Schema migrations (opening the file is in [`super::open`]).
//!
//! Migrations are append-only: a released migration is never edited; a change is a new entry at
//! the end of [`all_migrations`]. The version is SQLite's `user_version` (rusqlite_migration).

use log::warn;
use rusqlite::Transaction;
use rusqlite_migration::{HookResult, M, Migrations};

/// Schema version this build writes (number of migrations).
pub const SCHEMA_VERSION: u32 = 18;

/// Version 1: the initial schema (documented in the module docs of `journal`).
const V1: &str = "
CREATE TABLE databases (
    id            INTEGER PRIMARY KEY,
    role          TEXT    NOT NULL,
    database_type TEXT    NOT NULL,
    build_epoch   INTEGER NOT NULL,
    path          TEXT,
    registered_ms INTEGER,
    in_use        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (role, database_type, build_epoch)
);
CREATE TABLE apps (
    id            INTEGER PRIMARY KEY,
    identity      TEXT    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    exe           TEXT,
    cmdline       TEXT,
    uid           INTEGER NOT NULL,
    user          TEXT,
    unit          TEXT,
    cgroup        TEXT,
    container     TEXT,
    source        TEXT    NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
CREATE TABLE connections (
    id               INTEGER PRIMARY KEY,
    event            TEXT    NOT NULL,
    time_ms          INTEGER NOT NULL,
    first_seen_ms    INTEGER NOT NULL,
    closed_ms        INTEGER,
    cookie           INTEGER NOT NULL,
    app_id           INTEGER NOT NULL REFERENCES apps (id),
    app_pid          INTEGER NOT NULL,
    app_start_time   INTEGER NOT NULL,
    owner_tgid       INTEGER NOT NULL,
    owner_pid        INTEGER NOT NULL,
    owner_uid        INTEGER NOT NULL,
    owner_gid        INTEGER NOT NULL,
    owner_comm       TEXT    NOT NULL,
    owner_cgroup_id  INTEGER NOT NULL,
    owner_source     TEXT    NOT NULL,
    protocol         TEXT    NOT NULL,
    direction        TEXT    NOT NULL,
    local_ip         TEXT,
    local_port       INTEGER,
    remote_ip        TEXT,
    remote_port      INTEGER,
    payload_tx       INTEGER NOT NULL,
    payload_rx       INTEGER NOT NULL,
    wire_tx          INTEGER NOT NULL,
    wire_rx          INTEGER NOT NULL,
    packets_tx       INTEGER NOT NULL,
    packets_rx       INTEGER NOT NULL,
    delta_payload_tx INTEGER NOT NULL,
    delta_payload_rx INTEGER NOT NULL,
    delta_wire_tx    INTEGER NOT NULL,
    delta_wire_rx    INTEGER NOT NULL,
    delta_packets_tx INTEGER NOT NULL,
    delta_packets_rx INTEGER NOT NULL,
    payload_source   TEXT    NOT NULL,
    complete         INTEGER NOT NULL,
    scope            TEXT,
    country          TEXT,
    asn              INTEGER,
    as_org           TEXT,
    country_db       INTEGER REFERENCES databases (id),
    asn_db           INTEGER REFERENCES databases (id)
);
CREATE INDEX connections_time ON connections (time_ms);
CREATE TABLE residency (
    interval_start   INTEGER NOT NULL,
    interval_secs    INTEGER NOT NULL,
    app              TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    country          TEXT    NOT NULL,
    asn              INTEGER NOT NULL,
    as_org           TEXT    NOT NULL,
    country_db       INTEGER NOT NULL,
    asn_db           INTEGER NOT NULL,
    payload_source   TEXT    NOT NULL,
    payload_tx       INTEGER NOT NULL,
    payload_rx       INTEGER NOT NULL,
    wire_tx          INTEGER NOT NULL,
    wire_rx          INTEGER NOT NULL,
    packets_tx       INTEGER NOT NULL,
    packets_rx       INTEGER NOT NULL,
    connections      INTEGER NOT NULL,
    new_flows        INTEGER NOT NULL,
    incomplete_flows INTEGER NOT NULL,
    PRIMARY KEY (interval_start, app, scope, country, asn, as_org, country_db, asn_db, payload_source,
                 interval_secs)
) WITHOUT ROWID;
CREATE TABLE stats (
    id                   INTEGER PRIMARY KEY,
    time_ms              INTEGER NOT NULL,
    run_started_ms       INTEGER NOT NULL,
    last                 INTEGER NOT NULL,
    events_submitted     INTEGER NOT NULL,
    events_lost          INTEGER NOT NULL,
    storage_failures     INTEGER NOT NULL,
    peer_evictions       INTEGER NOT NULL,
    peer_parse_failures  INTEGER NOT NULL,
    unattributed_packets INTEGER NOT NULL,
    unattributed_bytes   INTEGER NOT NULL,
    events_received      INTEGER NOT NULL,
    decode_errors        INTEGER NOT NULL,
    closed_flows         INTEGER NOT NULL,
    silent_sockets       INTEGER NOT NULL,
    incomplete_flows     INTEGER NOT NULL,
    open_flows           INTEGER NOT NULL
);
CREATE INDEX stats_time ON stats (time_ms);
CREATE TABLE losses (
    id            INTEGER PRIMARY KEY,
    time_ms       INTEGER NOT NULL,
    first_ms      INTEGER NOT NULL,
    last_ms       INTEGER NOT NULL,
    records       INTEGER NOT NULL,
    buckets       INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL,
    wire_bytes    INTEGER NOT NULL
);
CREATE TABLE daemon_state (
    id                      INTEGER PRIMARY KEY CHECK (id = 1),
    pid                     INTEGER NOT NULL,
    started_ms              INTEGER NOT NULL,
    version                 TEXT    NOT NULL,
    config_path             TEXT,
    last_flush_ms           INTEGER,
    flushes                 INTEGER NOT NULL,
    rows_written            INTEGER NOT NULL,
    flush_interval_secs     INTEGER NOT NULL,
    residency_interval_secs INTEGER NOT NULL
);
CREATE TABLE exports (
    week       TEXT    NOT NULL,
    time_zone  TEXT    NOT NULL,
    format     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    written_ms INTEGER NOT NULL,
    PRIMARY KEY (week, time_zone, format)
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Version 2: weekly rollups (module `rollup`) and the index their flow counting probes. The
/// rollup tables start empty: `JournalWriter::open` fills them for its time zone.
const V2: &str = "
CREATE INDEX connections_cookie ON connections (cookie, remote_ip, remote_port, time_ms);
CREATE TABLE rollup_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    time_zone    TEXT    NOT NULL,
    covered_from INTEGER NOT NULL,
    built_ms     INTEGER NOT NULL
);
CREATE TABLE residency_week (
    week_start        INTEGER NOT NULL,
    app               TEXT    NOT NULL,
    scope             TEXT    NOT NULL,
    country           TEXT    NOT NULL,
    asn               INTEGER NOT NULL,
    as_org            TEXT    NOT NULL,
    country_db        INTEGER NOT NULL,
    asn_db            INTEGER NOT NULL,
    payload_source    TEXT    NOT NULL,
    payload_tx        INTEGER NOT NULL,
    payload_rx        INTEGER NOT NULL,
    wire_tx           INTEGER NOT NULL,
    wire_rx           INTEGER NOT NULL,
    packets_tx        INTEGER NOT NULL,
    packets_rx        INTEGER NOT NULL,
    new_flows         INTEGER NOT NULL,
    incomplete_flows  INTEGER NOT NULL,
    flow_intervals    INTEGER NOT NULL,
    first_interval    INTEGER NOT NULL,
    last_interval_end INTEGER NOT NULL,
    PRIMARY KEY (week_start, app, scope, country, asn, as_org, country_db, asn_db, payload_source)
) WITHOUT ROWID;
CREATE TABLE endpoint_week (
    week_start INTEGER NOT NULL,
    app        TEXT    NOT NULL,
    remote_ip  TEXT    NOT NULL,
    port       INTEGER NOT NULL,
    protocol   TEXT    NOT NULL,
    payload_tx INTEGER NOT NULL,
    payload_rx INTEGER NOT NULL,
    wire_tx    INTEGER NOT NULL,
    wire_rx    INTEGER NOT NULL,
    flows      INTEGER NOT NULL,
    latest_ms  INTEGER NOT NULL,
    scope      TEXT,
    country    TEXT,
    asn        INTEGER,
    as_org     TEXT,
    new        INTEGER NOT NULL,
    PRIMARY KEY (week_start, app, remote_ip, port, protocol)
) WITHOUT ROWID;
";

/// Version 3: the IP protocol number of each connection record (`protocol` names raw sockets of
/// every protocol `raw`). NULL in rows written before.
const V3: &str = "
ALTER TABLE connections ADD COLUMN ip_protocol INTEGER;
";

/// Claims (issue 11): live alerts, one row per (period, claim, destination); repeats counted.
const V_ALERTS: &str = "
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    period      TEXT    NOT NULL,
    claim       TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    exe         TEXT,
    pid         INTEGER NOT NULL,
    user        TEXT,
    country     TEXT,
    asn         INTEGER,
    as_org      TEXT,
    rule        TEXT    NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL,
    repeats     INTEGER NOT NULL,
    payload_tx  INTEGER NOT NULL,
    payload_rx  INTEGER NOT NULL,
    UNIQUE (period, claim, destination)
);
CREATE INDEX alerts_last ON alerts (last_ms);
";

/// Degradations of the daemon run (space-separated snake_case names, as in the `started` line;
/// empty: full fidelity; NULL: written by a daemon before this version).
const V_DEGRADATIONS: &str = "
ALTER TABLE daemon_state ADD COLUMN degradations TEXT;
";

/// Names (issue 10): the host name of each connection record, its registrable domain,
/// where it came from (`sni`, `quic_sni`, `dns`, `dns_host`, `getaddrinfo`, `none`), the DNS name
/// when it differs from the server name, and whether the server name is an ECH outer name. NULL
/// in rows written before (reports show them as unnamed); the index serves "by service".
const V_NAMES: &str = "
ALTER TABLE connections ADD COLUMN hostname TEXT;
ALTER TABLE connections ADD COLUMN registrable_domain TEXT;
ALTER TABLE connections ADD COLUMN name_source TEXT;
ALTER TABLE connections ADD COLUMN dns_name TEXT;
ALTER TABLE connections ADD COLUMN ech_outer INTEGER;
CREATE INDEX connections_hostname ON connections (hostname, time_ms);
";

/// Residency truth (issue 15): per connection record the kernel's RTT estimates
/// (`rtt_min_us`, `rtt_srtt_us`; TCP only), the country answer of every country database with
/// its provenance (`country_answers`, JSON) and their verdict (`consensus`: `agree`,
/// `disagree`, `partial`; NULL with fewer than two databases). NULL in rows written before.
const V_RESIDENCY_TRUTH: &str = "
ALTER TABLE connections ADD COLUMN rtt_min_us INTEGER;
ALTER TABLE connections ADD COLUMN rtt_srtt_us INTEGER;
ALTER TABLE connections ADD COLUMN consensus TEXT;
ALTER TABLE connections ADD COLUMN country_answers TEXT;
";

/// Sessions (`monitor session`, `monitor exec --session`): named time windows, optionally with
/// the cgroup a command ran in; and the hash chain over flushed batches (`journal/chain.rs`).
/// Rows written before this version are outside the chain.
const V_SESSIONS: &str = "
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    started_ms  INTEGER NOT NULL,
    stopped_ms  INTEGER,
    cgroup_id   INTEGER,
    cgroup_path TEXT,
    command     TEXT,
    exit_code   INTEGER
);
CREATE TABLE batches (
    id               INTEGER PRIMARY KEY,
    time_ms          INTEGER NOT NULL,
    first_connection INTEGER NOT NULL,
    last_connection  INTEGER NOT NULL,
    first_stats      INTEGER NOT NULL,
    last_stats       INTEGER NOT NULL,
    min_time_ms      INTEGER,
    max_time_ms      INTEGER,
    digests          BLOB    NOT NULL,
    prev_hash        BLOB    NOT NULL,
    hash             BLOB    NOT NULL
);
";

/// Android identity of an app (issue 12): its package (the first by name), every package of a
/// shared UID (space-separated), Android user, app ID and UID range (`app`, `sdk_sandbox`,
/// `isolated`). NULL for apps that are not Android apps and in rows written before.
const V_ANDROID: &str = "
ALTER TABLE apps ADD COLUMN android_package TEXT;
ALTER TABLE apps ADD COLUMN android_packages TEXT;
ALTER TABLE apps ADD COLUMN android_user_id INTEGER;
ALTER TABLE apps ADD COLUMN android_app_id INTEGER;
ALTER TABLE apps ADD COLUMN android_kind TEXT;
";

/// Names counters (issue 10) per statistics row, as increments like the others: payload copies
/// the kernel made (`copies_submitted`, lost ones included) and lost (`copies_lost`), payloads
/// the names stage could not parse (`names_malformed`) and names it learned (`names_learned`:
/// server names from TLS and QUIC ClientHellos plus DNS answers recorded). NULL in rows written
/// before. Not covered by the hash chain (its columns are those of schema 8).
const V_NAMES_STATS: &str = "
ALTER TABLE stats ADD COLUMN copies_submitted INTEGER;
ALTER TABLE stats ADD COLUMN copies_lost INTEGER;
ALTER TABLE stats ADD COLUMN names_malformed INTEGER;
ALTER TABLE stats ADD COLUMN names_learned INTEGER;
";

/// Weekly rollups of the names and residency-truth sections (issues 10 and 15), so that a weekly
/// report reads no connection record: `service_week` (traffic per app, host name, name source and
/// destination, with distinct sockets), `endpoint_name_week` (host names seen per app and
/// address) and, per `endpoint_week` row, the latest record's consensus and answers (`answers_id`:
/// the `country_answers` text, stored once in `answer_sets`) and the smallest RTT. Emptying `rollup_state` makes the next writer rebuild every rollup (the weeks of
/// the latest data and the one before, as for a new time zone): the new tables start complete.
/// `timeline_quarter`: residency payload per app and quarter hour (intervals divide 900 s), so a
/// report's daily or hourly timeline in any time zone reads sums instead of residency rows.
const V_NAMES_ROLLUP: &str = "
CREATE TABLE timeline_quarter (
    quarter_start INTEGER NOT NULL,
    app           TEXT    NOT NULL,
    payload_tx    INTEGER NOT NULL,
    payload_rx    INTEGER NOT NULL,
    PRIMARY KEY (quarter_start, app)
) WITHOUT ROWID;
CREATE TABLE service_week (
    week_start         INTEGER NOT NULL,
    app                TEXT    NOT NULL,
    hostname           TEXT    NOT NULL,
    registrable_domain TEXT    NOT NULL,
    name_source        TEXT    NOT NULL,
    country            TEXT    NOT NULL,
    asn                INTEGER NOT NULL,
    as_org             TEXT    NOT NULL,
    payload_tx         INTEGER NOT NULL,
    payload_rx         INTEGER NOT NULL,
    flows              INTEGER NOT NULL,
    PRIMARY KEY (week_start, app, hostname, registrable_domain, name_source, country, asn, as_org)
) WITHOUT ROWID;
CREATE TABLE endpoint_name_week (
    week_start INTEGER NOT NULL,
    app        TEXT    NOT NULL,
    remote_ip  TEXT    NOT NULL,
    hostname   TEXT    NOT NULL,
    PRIMARY KEY (week_start, app, remote_ip, hostname)
) WITHOUT ROWID;
ALTER TABLE endpoint_week ADD COLUMN consensus TEXT;
CREATE TABLE answer_sets (
    id   INTEGER PRIMARY KEY,
    text TEXT    NOT NULL UNIQUE
);
ALTER TABLE endpoint_week ADD COLUMN answers_id INTEGER;
ALTER TABLE endpoint_week ADD COLUMN rtt_min_us INTEGER;
DELETE FROM rollup_state;
";

/// Version 12 (issue 8): the host-name index covers only rows that have a host name. Rows of
/// unnamed flows (most short connections) no longer pay an index insert; every query that uses
/// the index asks for a host name (`hostname = ?`, `hostname IS NOT NULL`), which SQLite matches
/// to the partial index.
const V_HOSTNAME_PARTIAL: &str = "
DROP INDEX connections_hostname;
CREATE INDEX connections_hostname ON connections (hostname, time_ms) WHERE hostname IS NOT NULL;
";

/// Version 13 (issue 8): a connection record names its country answers by `answers_id` (the
/// `answer_sets` row holding the JSON text, stored once per distinct list) instead of repeating
/// the text (188 bytes with two country databases, half of a row) in `country_answers`, which
/// new rows leave NULL. Readers take `COALESCE(country_answers, answer_sets.text)`
/// ([`super::truth::ANSWERS_TEXT`]); the hash chain covers that text as before.
const V_ANSWER_IDS: &str = "
ALTER TABLE connections ADD COLUMN answers_id INTEGER;
";

/// The view `connections` over `connection_rows` and its shared parts, with the triggers that make
/// it writable (schema 14). One text for version 14 and for version 15's repair.
macro_rules! compact_view {
    () => {
        "
CREATE VIEW connections AS
SELECT
    r.id AS id, s.event AS event, r.time_ms AS time_ms, r.first_seen_ms AS first_seen_ms,
    r.closed_ms AS closed_ms, r.cookie AS cookie, o.app_id AS app_id, o.app_pid AS app_pid,
    o.app_start_time AS app_start_time, o.owner_tgid AS owner_tgid, o.owner_pid AS owner_pid,
    o.owner_uid AS owner_uid, o.owner_gid AS owner_gid, o.owner_comm AS owner_comm,
    o.owner_cgroup_id AS owner_cgroup_id, o.owner_source AS owner_source, s.protocol AS protocol,
    s.direction AS direction, r.local_ip AS local_ip, r.local_port AS local_port,
    r.remote_ip AS remote_ip, r.remote_port AS remote_port, r.payload_tx AS payload_tx,
    r.payload_rx AS payload_rx, r.wire_tx AS wire_tx, r.wire_rx AS wire_rx,
    r.packets_tx AS packets_tx, r.packets_rx AS packets_rx, r.delta_payload_tx AS delta_payload_tx,
    r.delta_payload_rx AS delta_payload_rx, r.delta_wire_tx AS delta_wire_tx,
    r.delta_wire_rx AS delta_wire_rx, r.delta_packets_tx AS delta_packets_tx,
    r.delta_packets_rx AS delta_packets_rx, s.payload_source AS payload_source,
    s.complete AS complete, d.scope AS scope, d.country AS country, d.asn AS asn,
    d.as_org AS as_org, d.country_db AS country_db, d.asn_db AS asn_db,
    s.ip_protocol AS ip_protocol, n.hostname AS hostname,
    n.registrable_domain AS registrable_domain,
    CASE WHEN r.names_id IS NULL THEN 'none' ELSE n.name_source END AS name_source,
    n.dns_name AS dns_name, CASE WHEN r.names_id IS NULL THEN 0 ELSE n.ech_outer END AS ech_outer,
    r.rtt_min_us AS rtt_min_us, r.rtt_srtt_us AS rtt_srtt_us, d.consensus AS consensus,
    NULL AS country_answers, d.answers_id AS answers_id, r.lookup AS lookup
FROM connection_rows r
    LEFT JOIN connection_shapes s ON s.id = r.shape_id
    LEFT JOIN connection_owners o ON o.id = r.owner_id
    LEFT JOIN connection_destinations d ON d.id = r.destination_id
    LEFT JOIN connection_names n ON n.id = r.names_id;
CREATE TRIGGER connections_insert INSTEAD OF INSERT ON connections BEGIN
    INSERT OR IGNORE INTO answer_sets (text) SELECT NEW.country_answers WHERE NEW.country_answers IS NOT NULL;
    INSERT INTO connection_shapes (event, protocol, direction, payload_source, complete, ip_protocol)
        SELECT NEW.event, NEW.protocol, NEW.direction, NEW.payload_source, NEW.complete, NEW.ip_protocol
        WHERE NOT EXISTS (SELECT 1 FROM connection_shapes WHERE event IS NEW.event AND protocol IS NEW.protocol AND direction IS NEW.direction AND payload_source IS NEW.payload_source AND complete IS NEW.complete AND ip_protocol IS NEW.ip_protocol);
    INSERT INTO connection_owners (app_id, app_pid, app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source)
        SELECT NEW.app_id, NEW.app_pid, NEW.app_start_time, NEW.owner_tgid, NEW.owner_pid, NEW.owner_uid, NEW.owner_gid, NEW.owner_comm, NEW.owner_cgroup_id, NEW.owner_source
        WHERE NOT EXISTS (SELECT 1 FROM connection_owners WHERE app_id IS NEW.app_id AND app_pid IS NEW.app_pid AND app_start_time IS NEW.app_start_time AND owner_tgid IS NEW.owner_tgid AND owner_pid IS NEW.owner_pid AND owner_uid IS NEW.owner_uid AND owner_gid IS NEW.owner_gid AND owner_comm IS NEW.owner_comm AND owner_cgroup_id IS NEW.owner_cgroup_id AND owner_source IS NEW.owner_source);
    INSERT INTO connection_destinations (scope, country, asn, as_org, country_db, asn_db, consensus, answers_id)
        SELECT NEW.scope, NEW.country, NEW.asn, NEW.as_org, NEW.country_db, NEW.asn_db, NEW.consensus, CASE WHEN NEW.country_answers IS NULL THEN NEW.answers_id ELSE (SELECT id FROM answer_sets WHERE text = NEW.country_answers) END
        WHERE NOT (NEW.scope IS NULL AND NEW.country IS NULL AND NEW.asn IS NULL AND NEW.as_org IS NULL AND NEW.country_db IS NULL AND NEW.asn_db IS NULL AND NEW.consensus IS NULL AND (CASE WHEN NEW.country_answers IS NULL THEN NEW.answers_id ELSE (SELECT id FROM answer_sets WHERE text = NEW.country_answers) END) IS NULL) AND NOT EXISTS (SELECT 1 FROM connection_destinations WHERE scope IS NEW.scope AND country IS NEW.country AND asn IS NEW.asn AND as_org IS NEW.as_org AND country_db IS NEW.country_db AND asn_db IS NEW.asn_db AND consensus IS NEW.consensus AND answers_id IS CASE WHEN NEW.country_answers IS NULL THEN NEW.answers_id ELSE (SELECT id FROM answer_sets WHERE text = NEW.country_answers) END);
    INSERT INTO connection_names (hostname, registrable_domain, name_source, dns_name, ech_outer)
        SELECT NEW.hostname, NEW.registrable_domain, NEW.name_source, NEW.dns_name, NEW.ech_outer
        WHERE NOT (NEW.hostname IS NULL AND NEW.registrable_domain IS NULL AND NEW.name_source IS 'none' AND NEW.dns_name IS NULL AND NEW.ech_outer IS 0) AND NOT EXISTS (SELECT 1 FROM connection_names WHERE hostname IS NEW.hostname AND registrable_domain IS NEW.registrable_domain AND name_source IS NEW.name_source AND dns_name IS NEW.dns_name AND ech_outer IS NEW.ech_outer);
    INSERT INTO connection_rows (id, time_ms, first_seen_ms, closed_ms, cookie, local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, rtt_min_us, rtt_srtt_us, shape_id, owner_id, destination_id, names_id, lookup)
        VALUES (NEW.id, NEW.time_ms, NEW.first_seen_ms, NEW.closed_ms, NEW.cookie, NEW.local_ip, NEW.local_port, NEW.remote_ip, NEW.remote_port, NEW.payload_tx, NEW.payload_rx, NEW.wire_tx, NEW.wire_rx, NEW.packets_tx, NEW.packets_rx, NEW.delta_payload_tx, NEW.delta_payload_rx, NEW.delta_wire_tx, NEW.delta_wire_rx, NEW.delta_packets_tx, NEW.delta_packets_rx, NEW.rtt_min_us, NEW.rtt_srtt_us, (SELECT id FROM connection_shapes WHERE event IS NEW.event AND protocol IS NEW.protocol AND direction IS NEW.direction AND payload_source IS NEW.payload_source AND complete IS NEW.complete AND ip_protocol IS NEW.ip_protocol LIMIT 1), (SELECT id FROM connection_owners WHERE app_id IS NEW.app_id AND app_pid IS NEW.app_pid AND app_start_time IS NEW.app_start_time AND owner_tgid IS NEW.owner_tgid AND owner_pid IS NEW.owner_pid AND owner_uid IS NEW.owner_uid AND owner_gid IS NEW.owner_gid AND owner_comm IS NEW.owner_comm AND owner_cgroup_id IS NEW.owner_cgroup_id AND owner_source IS NEW.owner_source LIMIT 1), CASE WHEN NEW.scope IS NULL AND NEW.country IS NULL AND NEW.asn IS NULL AND NEW.as_org IS NULL AND NEW.country_db IS NULL AND NEW.asn_db IS NULL AND NEW.consensus IS NULL AND (CASE WHEN NEW.country_answers IS NULL THEN NEW.answers_id ELSE (SELECT id FROM answer_sets WHERE text = NEW.country_answers) END) IS NULL THEN NULL ELSE (SELECT id FROM connection_destinations WHERE scope IS NEW.scope AND country IS NEW.country AND asn IS NEW.asn AND as_org IS NEW.as_org AND country_db IS NEW.country_db AND asn_db IS NEW.asn_db AND consensus IS NEW.consensus AND answers_id IS CASE WHEN NEW.country_answers IS NULL THEN NEW.answers_id ELSE (SELECT id FROM answer_sets WHERE text = NEW.country_answers) END LIMIT 1) END, CASE WHEN NEW.hostname IS NULL AND NEW.registrable_domain IS NULL AND NEW.name_source IS 'none' AND NEW.dns_name IS NULL AND NEW.ech_outer IS 0 THEN NULL ELSE (SELECT id FROM connection_names WHERE hostname IS NEW.hostname AND registrable_domain IS NEW.registrable_domain AND name_source IS NEW.name_source AND dns_name IS NEW.dns_name AND ech_outer IS NEW.ech_outer LIMIT 1) END, COALESCE(NEW.lookup, 1));
END;
CREATE TRIGGER connections_delete INSTEAD OF DELETE ON connections BEGIN
    DELETE FROM connection_rows WHERE id = OLD.id;
END;
CREATE TRIGGER connections_update INSTEAD OF UPDATE ON connections BEGIN
    DELETE FROM connection_rows WHERE id = OLD.id;
    INSERT INTO connections (id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction, local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, payload_source, complete, scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname, registrable_domain, name_source, dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus, country_answers, answers_id, lookup)
        VALUES (NEW.id, NEW.event, NEW.time_ms, NEW.first_seen_ms, NEW.closed_ms, NEW.cookie, NEW.app_id, NEW.app_pid, NEW.app_start_time, NEW.owner_tgid, NEW.owner_pid, NEW.owner_uid, NEW.owner_gid, NEW.owner_comm, NEW.owner_cgroup_id, NEW.owner_source, NEW.protocol, NEW.direction, NEW.local_ip, NEW.local_port, NEW.remote_ip, NEW.remote_port, NEW.payload_tx, NEW.payload_rx, NEW.wire_tx, NEW.wire_rx, NEW.packets_tx, NEW.packets_rx, NEW.delta_payload_tx, NEW.delta_payload_rx, NEW.delta_wire_tx, NEW.delta_wire_rx, NEW.delta_packets_tx, NEW.delta_packets_rx, NEW.payload_source, NEW.complete, NEW.scope, NEW.country, NEW.asn, NEW.as_org, NEW.country_db, NEW.asn_db, NEW.ip_protocol, NEW.hostname, NEW.registrable_domain, NEW.name_source, NEW.dns_name, NEW.ech_outer, NEW.rtt_min_us, NEW.rtt_srtt_us, NEW.consensus, NEW.country_answers, NEW.answers_id, NEW.lookup);
END;
"
    };
}

/// The rollups' probe index: only the records marked `lookup` (schema 14; version 15's repair).
macro_rules! cookie_index {
    () => {
        "
CREATE INDEX connections_cookie ON connection_rows (cookie, remote_ip, remote_port, time_ms) WHERE lookup IS NOT NULL;
"
    };
}

/// Version 14 (issue 8): compact connection records. SQLite's cost per record grows with the
/// columns of its table (about 35 ns of CPU per value), and most of a record's 53 values repeat
/// from record to record: its owner (10 values), destination (8), names (5) and shape (event,
/// protocol, direction, payload source, completeness, IP protocol). `connection_rows` keeps the
/// per-record values and an id into each of `connection_owners`, `connection_destinations`,
/// `connection_names` and `connection_shapes` (each distinct combination stored once; a NULL
/// `destination_id` is the all-NULL destination of a record without remote address, a NULL
/// `names_id` an unnamed flow: no host name, `name_source` `none`). The view `connections` joins
/// them back into the columns of schema 13, so every reader's SQL, the hash chain's row digests
/// and external queries stay as they were; `country_answers` reads NULL (the migration moves
/// legacy texts to `answer_sets`). INSTEAD OF triggers make the view writable (insert, update,
/// delete), interning as the daemon does; the daemon itself writes `connection_rows`. Existing
/// rows are copied through the view (ids kept).
/// `lookup` (not covered by the hash chain: an index hint) is 1 on the records the rollups'
/// probe may have to find again: the first record of its socket at an endpoint or service in a
/// week, and every record copied or inserted through the view. `connections_cookie` covers only
/// those, so the records of a UDP server's peers after the first of each address, which land at
/// scattered places of the index, no longer feed it.
const V_COMPACT_ROWS: &str = concat!(
    "
ALTER TABLE connections RENAME TO connections_v13;
DROP INDEX connections_time;
DROP INDEX connections_cookie;
DROP INDEX connections_hostname;
CREATE TABLE connection_shapes (
    id             INTEGER PRIMARY KEY,
    event          TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    direction      TEXT NOT NULL,
    payload_source TEXT NOT NULL,
    complete       INTEGER NOT NULL,
    ip_protocol    INTEGER
);
CREATE INDEX connection_shapes_values ON connection_shapes (event, protocol, direction, payload_source, complete, ip_protocol);
CREATE TABLE connection_owners (
    id              INTEGER PRIMARY KEY,
    app_id          INTEGER NOT NULL REFERENCES apps (id),
    app_pid         INTEGER NOT NULL,
    app_start_time  INTEGER NOT NULL,
    owner_tgid      INTEGER NOT NULL,
    owner_pid       INTEGER NOT NULL,
    owner_uid       INTEGER NOT NULL,
    owner_gid       INTEGER NOT NULL,
    owner_comm      TEXT NOT NULL,
    owner_cgroup_id INTEGER NOT NULL,
    owner_source    TEXT NOT NULL
);
CREATE INDEX connection_owners_values ON connection_owners (app_id, app_pid, app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source);
CREATE TABLE connection_destinations (
    id         INTEGER PRIMARY KEY,
    scope      TEXT,
    country    TEXT,
    asn        INTEGER,
    as_org     TEXT,
    country_db INTEGER REFERENCES databases (id),
    asn_db     INTEGER REFERENCES databases (id),
    consensus  TEXT,
    answers_id INTEGER
);
CREATE INDEX connection_destinations_values ON connection_destinations (scope, country, asn, as_org, country_db, asn_db, consensus, answers_id);
CREATE TABLE connection_names (
    id                 INTEGER PRIMARY KEY,
    hostname           TEXT,
    registrable_domain TEXT,
    name_source        TEXT,
    dns_name           TEXT,
    ech_outer          INTEGER
);
CREATE INDEX connection_names_values ON connection_names (hostname, registrable_domain, name_source, dns_name, ech_outer);
CREATE TABLE connection_rows (
    id               INTEGER PRIMARY KEY,
    time_ms          INTEGER NOT NULL,
    first_seen_ms    INTEGER NOT NULL,
    closed_ms        INTEGER,
    cookie           INTEGER NOT NULL,
    local_ip         TEXT,
    local_port       INTEGER,
    remote_ip        TEXT,
    remote_port      INTEGER,
    payload_tx       INTEGER NOT NULL,
    payload_rx       INTEGER NOT NULL,
    wire_tx          INTEGER NOT NULL,
    wire_rx          INTEGER NOT NULL,
    packets_tx       INTEGER NOT NULL,
    packets_rx       INTEGER NOT NULL,
    delta_payload_tx INTEGER NOT NULL,
    delta_payload_rx INTEGER NOT NULL,
    delta_wire_tx    INTEGER NOT NULL,
    delta_wire_rx    INTEGER NOT NULL,
    delta_packets_tx INTEGER NOT NULL,
    delta_packets_rx INTEGER NOT NULL,
    rtt_min_us       INTEGER,
    rtt_srtt_us      INTEGER,
    shape_id         INTEGER NOT NULL,
    owner_id         INTEGER NOT NULL,
    destination_id   INTEGER,
    names_id         INTEGER,
    lookup           INTEGER
);
",
    compact_view!(),
    "
INSERT INTO connections (id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction, local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, payload_source, complete, scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname, registrable_domain, name_source, dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus, country_answers, answers_id)
    SELECT id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction, local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, payload_source, complete, scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname, registrable_domain, name_source, dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus, country_answers, answers_id
    FROM connections_v13 ORDER BY id;
DROP TABLE connections_v13;
CREATE INDEX connections_time ON connection_rows (time_ms);
",
    cookie_index!(),
    "
CREATE INDEX connections_hostname ON connection_rows (names_id, time_ms) WHERE names_id IS NOT NULL;
"
);

/// Version 15 (issue 8): repairs a schema-14 journal whose `connection_rows` has no `lookup`.
/// Schema 14 gained that column by an edit of its migration before release (570ac23 to 6b09668
/// wrote schema 14 without it), and the daemon fails on such a journal with "no such column:
/// lookup". There the column is added and set to 1 on every record (each may be one the rollups'
/// probe looks for), the view and its triggers are recreated to read and write it, and
/// `connections_cookie` is rebuilt as the partial index. A journal with the column is left as it
/// is ([`repair_lookup`]).
const V_LOOKUP_REPAIR: &str = concat!(
    "
ALTER TABLE connection_rows ADD COLUMN lookup INTEGER;
UPDATE connection_rows SET lookup = 1;
DROP VIEW connections;
",
    compact_view!(),
    "DROP INDEX connections_cookie;
",
    cookie_index!(),
);

/// Version 16 (issue 8): how a batch of the hash chain digests its `connections` rows
/// (`chain::row_digest_v2`): 1 for every batch written before, 2 for the batches written since
/// (one digest per shared combination of values, not its values in every row). The batch's hash
/// covers the format.
const V_ROW_FORMAT: &str = "
ALTER TABLE batches ADD COLUMN row_format INTEGER NOT NULL DEFAULT 1;
";

/// Version 18: a service's `flows` in `service_week` count (socket, remote end) pairs, as the
/// report's record path does (an unconnected socket has a flow per peer; they counted sockets).
/// Emptying `rollup_state` makes the next writer rebuild the rollups from the records (the
/// latest two weeks; older weeks are reported from the records, which count the new way), so
/// `journal verify` finds the two in agreement.
const V_SERVICE_FLOWS: &str = "
DELETE FROM rollup_state;
";

/// Version 15's hook: runs [`V_LOOKUP_REPAIR`] when `connection_rows` lacks `lookup`.
fn repair_lookup(tx: &Transaction) -> HookResult {
    let has_lookup: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('connection_rows') WHERE name = 'lookup')",
        [],
        |row| row.get(0),
    )?;
    if !has_lookup {
        warn!("journal: schema 14 without connection_rows.lookup (written before its release); adding it");
        tx.execute_batch(V_LOOKUP_REPAIR)?;
    }
    Ok(())
}

/// Every migration, oldest first. Append only.
fn all_migrations() -> Vec<M<'static>> {
    vec![
        M::up(V1),
        M::up(V2),
        M::up(V3),
        M::up(V_ALERTS),
        M::up(V_DEGRADATIONS),
        M::up(V_NAMES),
        M::up(V_RESIDENCY_TRUTH),
        M::up(V_SESSIONS),
        M::up(V_ANDROID),
        M::up(V_NAMES_STATS),
        M::up(V_NAMES_ROLLUP),
        M::up(V_HOSTNAME_PARTIAL),
        M::up(V_ANSWER_IDS),
        M::up(V_COMPACT_ROWS),
        M::up_with_hook("", repair_lookup),
        M::up(V_ROW_FORMAT),
        M::up(super::spans::MIGRATION),
        M::up(V_SERVICE_FLOWS),
    ]
}

pub(super) fn migrations() -> Migrations<'static> {
    Migrations::new(all_migrations())
}

/// The view and triggers of schema 14, for tests that rebuild an older form of them.
#[cfg(test)]
pub(super) const COMPACT_VIEW: &str = compact_view!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_match_schema_version() {
        migrations().validate().expect("migrations valid");
        assert_eq!(all_migrations().len(), SCHEMA_VERSION as usize);
    }

    /// The host-name index leaves unnamed rows out, and lookups by name through the view still
    /// use it.
    #[test]
    fn hostname_index_is_partial_and_serves_lookups_by_name() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("memory database");
        migrations().to_latest(&mut conn).expect("migrations");
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'connections_hostname'", [], |r| r.get(0))
            .expect("index");
        // Schema 14: unnamed flows have no `names_id`.
        assert!(sql.ends_with("WHERE names_id IS NOT NULL"), "{sql}");
        let plan: Vec<String> = conn
            .prepare("EXPLAIN QUERY PLAN SELECT id FROM connections WHERE hostname = ?1 AND time_ms >= ?2")
            .expect("plan")
            .query_map(rusqlite::params!["example.com", 0], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan rows");
        assert!(plan.iter().any(|p| p.contains("connections_hostname")), "{plan:?}");
    }
}
