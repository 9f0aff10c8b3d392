//! Flows that continue across a restart of the daemon: a socket older than this run (discovered
//! at its first packet, its direction unknown to the kernel) that an earlier run journaled. Its
//! records take the direction that run knew, and its first record here is not a new flow, so a
//! connection open across a restart stays one flow to one endpoint in reports.

use rusqlite::{OptionalExtension as _, params};

use super::{Error, JournalWriter, names};
use crate::tracker::record::Direction;

impl JournalWriter {
    /// The direction the journal knows for socket `cookie` (its latest record with a direction,
    /// found through the rollups' probe index `connections_cookie`: every socket's first record
    /// of each week is in it), or `None` when no earlier record of the socket says one.
    ///
    /// # Errors
    /// When the query fails, or the stored direction is not one this build knows.
    pub fn earlier_direction(&self, cookie: u64) -> Result<Option<Direction>, Error> {
        let read = |source| Error::read(self.path(), source);
        let text: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT s.direction FROM connection_rows r JOIN connection_shapes s ON s.id = r.shape_id
                 WHERE r.cookie = ?1 AND r.lookup IS NOT NULL AND s.direction != ?2
                 ORDER BY r.time_ms DESC LIMIT 1",
            )
            .map_err(read)?
            .query_row(params![cookie.cast_signed(), names::name(Direction::Unknown)], |row| row.get(0))
            .optional()
            .map_err(read)?;
        text.map(|t| names::parse(0, &t)).transpose().map_err(read)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        fixtures::{self, Flow, at},
        tempdir, writer_in,
    };
    use crate::tracker::record::{Direction, RecordKind};

    const T0: i64 = 1_794_787_200;

    #[test]
    fn the_direction_of_an_earlier_run_is_found_by_cookie() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("server");
        let mut inbound = Flow::new(7, "192.0.2.1:50000", at(T0));
        inbound.direction = Direction::Inbound;
        w.append(&inbound.record(RecordKind::Update, at(T0 + 10), 100, 200), &app, None);
        w.append(&inbound.record(RecordKind::Shutdown, at(T0 + 20), 100, 200), &app, None);
        // A later record of the socket without a direction (a run after a restart) hides nothing.
        let mut later = inbound.record(RecordKind::Update, at(T0 + 8 * 86_400), 5, 5);
        later.direction = Direction::Unknown;
        w.append(&later, &app, None);
        let mut unknown = Flow::new(8, "192.0.2.2:443", at(T0));
        unknown.direction = Direction::Unknown;
        w.append(&unknown.record(RecordKind::Update, at(T0 + 10), 1, 1), &app, None);
        w.flush().expect("flush");
        assert_eq!(w.earlier_direction(7).expect("query"), Some(Direction::Inbound));
        assert_eq!(w.earlier_direction(8).expect("query"), None, "never had a direction");
        assert_eq!(w.earlier_direction(9).expect("query"), None, "never journaled");
        assert_eq!(w.earlier_direction(u64::MAX).expect("query"), None);
    }
}
