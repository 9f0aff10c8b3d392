//! Text names of unit enum variants, taken from the enum's serde derive (`rename_all =
//! "snake_case"`): the one spelling of each variant in the journal, JSON output, reports,
//! metric labels and messages. No enum spells its variants by hand beside its derive.
//! A leaf: it imports no other module of the crate, so every stage may name its enums.

use serde::{Serialize, de::DeserializeOwned};

/// The serde name of the unit variant `v` (no allocation).
pub fn name<T: Serialize + Copy>(v: T) -> &'static str {
    // Fails only for a value that is not an enum variant; the callers pass unit variants.
    serde_variant::to_variant_name(&v).unwrap_or("unnamed")
}

/// The unit variant whose serde name is `text`.
///
/// # Errors
/// When `text` names no variant of `T` (the error lists the names `T` has).
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, serde::de::value::Error> {
    T::deserialize(serde::de::value::StrDeserializer::new(text))
}

/// `names` for a message: "a, b or c" ("a" alone, "a or b" for two).
pub fn or_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Asserts that `pairs` holds the names of `T`'s variants: each name is the serde name (JSON
/// agrees) and parses back to its variant. The callers list every variant with the name in use.
#[cfg(test)]
pub(crate) fn assert_names<T>(pairs: &[(T, &str)])
where
    T: Serialize + DeserializeOwned + Copy + PartialEq + std::fmt::Debug,
{
    for &(v, text) in pairs {
        assert_eq!(name(v), text, "{v:?}");
        assert_eq!(serde_json::to_value(v).expect("json"), text, "{v:?}: JSON uses the same name");
        assert_eq!(parse::<T>(text).ok(), Some(v), "{text} parses back");
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn names_for_messages_end_in_or() {
        assert_eq!(or_list([]), "");
        assert_eq!(or_list(["log"]), "log");
        assert_eq!(or_list(["log", "json"]), "log or json");
        assert_eq!(or_list(["table", "json", "csv", "markdown", "html"]), "table, json, csv, markdown or html");
        let formats = crate::report::Format::names();
        assert_eq!(formats, "table, json, csv, markdown or html", "every variant, derived");
    }

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Sample {
        One,
        TwoWords,
    }

    #[test]
    fn names_come_from_serde_and_parse_back() {
        assert_names(&[(Sample::One, "one"), (Sample::TwoWords, "two_words")]);
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_known_ones() {
        let e = parse::<Sample>("three").expect_err("unknown");
        assert_eq!(e.to_string(), "unknown variant `three`, expected `one` or `two_words`");
        assert!(parse::<Sample>("TwoWords").is_err(), "the Rust spelling is not a name");
    }
}
