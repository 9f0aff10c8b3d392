//! Logging: journald when running under systemd, else stderr; `-v` or `RUST_LOG` set the level.

use log::LevelFilter;

/// Installs the logger once.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    };
    if systemd_journal_logger::connected_to_journal()
        && let Ok(logger) = systemd_journal_logger::JournalLog::new()
        && logger.install().is_ok()
    {
        log::set_max_level(level);
        return;
    }
    env_logger::Builder::new().filter_level(level).format_target(false).parse_default_env().init();
}
