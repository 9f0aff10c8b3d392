//! Error text helpers shared by the stages (not a stage itself).

use std::error::Error;

/// `error: cause: cause…` of an error and its sources, on one line (log lines, degradation
/// reasons, the command line's errors). A cause whose text the line already ends with (errors
/// that print their source themselves, e.g. maxminddb's I/O error) is not repeated.
#[must_use]
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Repeated only when it ends the line after a separator, not as the tail of a word.
        let repeated = out.strip_suffix(text.as_str()).is_some_and(|head| head.ends_with(": ") || head.ends_with(' '));
        if !repeated {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_are_joined_on_one_line() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open the journal")]
        struct Open(#[source] std::io::Error);
        assert_eq!(super::chain(&Open(std::io::Error::other("no space"))), "cannot open the journal: no space");
    }

    #[test]
    fn a_cause_already_in_the_text_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot open `/g.mmdb`")]
        struct Open(#[source] Io);
        #[derive(Debug, thiserror::Error)]
        #[error("i/o error: {0}")]
        struct Io(#[source] std::io::Error);
        let e = Open(Io(std::io::Error::other("no such file")));
        assert_eq!(super::chain(&e), "cannot open `/g.mmdb`: i/o error: no such file");
        // The tail of a word is not a repeat.
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read /var/data")]
        struct Read(#[source] std::io::Error);
        assert_eq!(super::chain(&Read(std::io::Error::other("data"))), "cannot read /var/data: data");
    }
}
