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
    env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, record| {
            use std::io::Write as _;
            let ts = buf.timestamp();
            writeln!(buf, "[{ts} {:<5}] {}", record.level(), one_entry(&record.args().to_string()))
        })
        .parse_default_env()
        .init();
}

/// A message as one log entry: later lines are indented (text from elsewhere, e.g. a path given
/// on the command line, cannot start a line that looks like an entry of its own) and other
/// control characters are escaped.
fn one_entry(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push(c),
            c if monitor::escape::is_invisible(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_cannot_forge_another_entry_nor_send_control_characters() {
        let message = "cannot open `/tmp/q\u{1b}]0;T\u{7}\nFAKE: ok\r\u{202e}\u{2028}`";
        assert_eq!(
            super::one_entry(message),
            "cannot open `/tmp/q\\u{1b}]0;T\\u{7}\n    FAKE: ok\\u{d}\\u{202e}\\u{2028}`"
        );
    }
}
