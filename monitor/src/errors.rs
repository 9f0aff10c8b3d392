//! Error text helpers shared by the stages (not a stage itself).

use std::error::Error;

/// `error: cause: cause…` of an error and its sources, on one line (log lines, degradation
/// reasons).
#[must_use]
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
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
}
