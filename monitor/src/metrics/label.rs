//! Label values from other processes (app names, AS organisations) are hostile: the exposition
//! crate writes label values verbatim, so a `"` or a newline in an app name would end the value
//! and forge series. [`Label`] escapes them as the OpenMetrics text format requires (`\\`, `\"`,
//! `\n`).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A label value, escaped when encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label<'a>(pub &'a str);

impl EncodeLabelValue for Label<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.0.contains(['\\', '"', '\n']) {
            return encoder.write_str(self.0);
        }
        for c in self.0.chars() {
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
        assert!(text.contains(r#"t_total{app="x\"} 1\nmonitor_fake_total{app=\"y\\"} 1"#), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("monitor_fake")).count(), 0, "{text}");
    }
}
