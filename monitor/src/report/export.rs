//! Weekly exports: each completed week written once per format, atomically, and recorded in the
//! journal's `exports` table so a restarted daemon does not write it again.

use std::{
    collections::BTreeSet,
    fs::{self, DirBuilder, File},
    io::Write,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use jiff::{SignedDuration, Timestamp};

use super::{Error, Format, Period, Report, ReportQuery};
use crate::{
    journal::{ExportRow, JournalReader, record_export},
    zone::Zone,
};

/// Time after the end of a week before it counts as complete. The last records of a week reach
/// the journal within one update interval plus one flush interval (seconds); ten minutes is ample.
/// The daemon should flush its journal before exporting.
pub const EXPORT_GRACE: SignedDuration = SignedDuration::from_mins(10);
/// Weeks looked at by [`pending_exports`] at most (longer than the default residency retention).
const MAX_WEEKS: usize = 600;
/// Mode of export files (they name apps and destinations, like the journal).
const FILE_MODE: u32 = 0o600;
/// Mode of a created export directory.
const DIR_MODE: u32 = 0o700;

/// What a weekly export adds to the report beyond the journal: the device location
/// (plausibility) and a callback that may annotate the report (the daemon adds the claim
/// verdicts; `report` cannot call the claims stage, which sits downstream of it).
#[derive(Default)]
pub struct ExportExtras<'a> {
    /// `[device] location`.
    pub device: Option<crate::residency::DeviceLocation>,
    /// Called with the built report before it is rendered.
    pub annotate: Option<&'a Annotate<'a>>,
}

/// A callback that adds to a built report (see [`ExportExtras::annotate`]).
pub type Annotate<'a> = dyn Fn(&JournalReader, &ReportQuery, &mut Report) + 'a;

/// Writes the report of ISO week `week` ("2026-W47", cut in `zone`) to
/// `<dir>/<week>.<extension>` for each format not yet exported, atomically (temporary file,
/// fsync, rename), and records each in the journal. Returns the files written: empty when every
/// format was already exported (a no-op, also after a restart).
///
/// # Errors
/// An invalid week, journal errors, or [`Error::Export`] when a file cannot be written.
pub fn export_week(
    reader: &JournalReader,
    week: &str,
    zone: &Zone,
    dir: &Path,
    formats: &[Format],
    extras: &ExportExtras<'_>,
) -> Result<Vec<PathBuf>, Error> {
    let period = Period::iso_week(week, zone)?;
    let mut pending = Vec::new();
    for format in formats.iter().copied().collect::<BTreeSet<_>>() {
        if reader.export(&period.label, &zone.name, format.name())?.is_none() {
            pending.push(format);
        }
    }
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::Export { path: dir.to_path_buf(), source })?;
    check_dir(dir)?;
    let mut query = ReportQuery::new(period.clone());
    query.device.clone_from(&extras.device);
    let mut report = Report::build(reader, &query)?;
    if let Some(annotate) = extras.annotate {
        annotate(reader, &query, &mut report);
    }
    let mut written = Vec::new();
    for format in pending {
        let mut text = Vec::new();
        report.render(format, &mut text)?;
        let path = dir.join(format!("{}.{}", period.label, format.extension()));
        write_atomic(&path, &text)?;
        let row = ExportRow {
            week: period.label.clone(),
            time_zone: zone.name.clone(),
            format: format.name().to_string(),
            path: path.clone(),
            written_at: Timestamp::now(),
        };
        record_export(reader.path(), &row)?;
        written.push(path);
    }
    Ok(written)
}

/// Weeks (labels, oldest first) that ended at least [`EXPORT_GRACE`] before `now`, have data in
/// the journal, and lack an export in one of `formats`. Weeks are cut in `zone`.
///
/// # Errors
/// Journal errors, or [`Error::Period`] for a week beyond the range jiff represents.
pub fn pending_exports(
    reader: &JournalReader,
    now: Timestamp,
    zone: &Zone,
    formats: &[Format],
) -> Result<Vec<String>, Error> {
    let Some(first) = reader.first_data()? else { return Ok(Vec::new()) };
    let mut week = Period::week_containing(first, zone)?;
    let mut pending = Vec::new();
    for _ in 0..MAX_WEEKS {
        let complete = week.until.checked_add(EXPORT_GRACE).is_ok_and(|t| t <= now);
        if !complete {
            break;
        }
        if reader.has_data(week.time_range())? {
            let mut missing = false;
            for format in formats {
                missing |= reader.export(&week.label, &zone.name, format.name())?.is_none();
            }
            if missing {
                pending.push(week.label.clone());
            }
        }
        week = week.next()?;
    }
    Ok(pending)
}

/// Refuses an export directory that another user could write to (they could plant or swap
/// files there), unless it is sticky and ours (like a private `/tmp`: others cannot touch our
/// files in it).
fn check_dir(dir: &Path) -> Result<(), Error> {
    let meta = fs::metadata(dir).map_err(|source| Error::Export { path: dir.to_path_buf(), source })?;
    let refuse = |reason: String| Error::ExportDir { path: dir.to_path_buf(), reason };
    if !meta.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    let mode = meta.mode();
    let euid = nix::unistd::geteuid().as_raw();
    if mode & 0o022 != 0 && !(mode & 0o1000 != 0 && meta.uid() == euid) {
        return Err(refuse(format!(
            "it is writable by {} (mode {:o}, owner uid {}); use a directory only uid {euid} can write, or a sticky one \
             owned by uid {euid}",
            if mode & 0o002 != 0 { "every user" } else { "its group" },
            mode & 0o7777,
            meta.uid()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one: a new
/// temporary file in the same directory (random name, `O_EXCL`: never an existing file or a
/// symlink), fsync, rename over `path` (replaces a symlink there, never follows it), fsync of the
/// directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let err = |source| Error::Export { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}
