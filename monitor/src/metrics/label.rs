//! Label values from other processes (app names, AS organisations) are hostile: the exposition
//! crate writes label values verbatim, so a `"` or a newline in an app name would end the value
//! and forge series, and a control character (an escape sequence, a bidi override) would reach
//! the terminal of whoever reads `/metrics` with curl. [`Label`] writes a value's
//! [`crate::escape::terminal`] form (every control or invisible character as `\xNN` or `\u{N}`,
//! `\` doubled: the form log lines show) when it holds such a character or a backslash, and
//! escapes that as the OpenMetrics text format requires (`\\`, `\"`).

use std::{borrow::Cow, fmt::Write as _};

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

use crate::escape::{is_invisible, terminal};

/// A label value, escaped when encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label<'a>(pub &'a str);

impl EncodeLabelValue for Label<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let text: Cow<'_, str> =
            if self.0.chars().any(|c| c == '\\' || is_invisible(c)) { terminal(self.0).into() } else { self.0.into() };
        if !text.contains(['\\', '"', '\n']) {
            return encoder.write_str(&text);
        }
        for c in text.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// An owned label value (database types from file metadata), escaped like [`Label`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedLabel(pub String);

impl EncodeLabelValue for OwnedLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        Label(&self.0).encode(encoder)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{
        encoding::{EncodeLabelSet, text::encode},
        metrics::{counter::Counter, family::Family},
        registry::Registry,
    };

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        app: Label<'static>,
    }

    #[test]
    fn hostile_names_cannot_end_the_value_or_forge_series() {
        let family = Family::<L, Counter>::default();
        let hostile = "x\"} 1\nmonitor_fake_total{app=\"y\\";
        family.get_or_create(&L { app: Label(hostile) }).inc();
        let mut registry = Registry::default();
        registry.register("t", "test", family);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        // The newline and the backslash in their terminal form (`\n`, `\\`), escaped again.
        assert!(text.contains(r#"t_total{app="x\"} 1\\nmonitor_fake_total{app=\"y\\\\"} 1"#), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("monitor_fake")).count(), 0, "{text}");
    }

    #[test]
    fn control_and_invisible_characters_never_reach_the_exposition_raw() {
        let family = Family::<L, Counter>::default();
        for name in ["evil\u{1b}[31mRED\u{1b}]0;TITLE\u{7}", "abc\u{202e}fdp.exe", "del\u{7f}", "plain name"] {
            family.get_or_create(&L { app: Label(name) }).inc();
        }
        let mut registry = Registry::default();
        registry.register("t", "test", family);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(!text.chars().any(|c| c != '\n' && is_invisible(c)), "{text:?}");
        assert!(text.contains(r#"app="evil\\x1b[31mRED\\x1b]0;TITLE\\x07""#), "{text}");
        assert!(text.contains(r#"app="abc\\u{202e}fdp.exe""#), "{text}");
        assert!(text.contains(r#"app="del\\x7f""#) && text.contains(r#"app="plain name""#), "{text}");
    }
}
