//! Consensus of the country databases on one address (issue 15).
//!
//! Every public address is looked up in every loaded country database: the primary one
//! (`[geo] country_db`, DB-IP by default), the registry one (`[geo] registry_db`, the RIR/WHOIS
//! country from ip-location-db by default) and any `[[geo.extra_country]]`. Each answer keeps
//! the database it came from ([`CountryAnswer`]); [`verdict`] sums them up. Pure data: the
//! lookups themselves are the [`Enricher`](super::Enricher)'s.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::DbRef;

/// Label of the primary country database (`[geo] country_db`) in [`CountryAnswer::label`].
pub const PRIMARY_LABEL: &str = "primary";
/// Label of the registry country database (`[geo] registry_db`).
pub const REGISTRY_LABEL: &str = "registry";

/// What the country databases say about one address, together. Named by its serde derive
/// ([`crate::variant`]) in the journal and the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consensus {
    /// Every database answered, with the same country.
    Agree,
    /// At least two databases answered with different countries.
    Disagree,
    /// The databases that answered agree, but at least one had no answer.
    Partial,
}

/// One country database's answer for one address, with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CountryAnswer {
    /// [`PRIMARY_LABEL`], [`REGISTRY_LABEL`] or the `label` of an `[[geo.extra_country]]`.
    pub label: Arc<str>,
    /// The database asked.
    pub db: DbRef,
    /// ISO 3166-1 alpha-2 code; `None`: the database does not cover the address.
    pub country: Option<Arc<str>>,
}

/// The verdict of `answers`; `None` with fewer than two databases (nothing to compare).
#[must_use]
pub fn verdict(answers: &[CountryAnswer]) -> Option<Consensus> {
    if answers.len() < 2 {
        return None;
    }
    let mut known = answers.iter().filter_map(|a| a.country.as_deref());
    let Some(first) = known.next() else {
        return Some(Consensus::Partial);
    };
    if known.any(|c| c != first) {
        Some(Consensus::Disagree)
    } else if answers.iter().all(|a| a.country.is_some()) {
        Some(Consensus::Agree)
    } else {
        Some(Consensus::Partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(label: &str, country: Option<&str>) -> CountryAnswer {
        CountryAnswer {
            label: label.into(),
            db: DbRef { database_type: "test".into(), build_epoch: 1 },
            country: country.map(Into::into),
        }
    }

    #[test]
    fn verdict_of_answers() {
        let v = |list: &[(&str, Option<&str>)]| verdict(&list.iter().map(|(l, c)| answer(l, *c)).collect::<Vec<_>>());
        assert_eq!(v(&[("primary", Some("US"))]), None, "one database: nothing to compare");
        assert_eq!(v(&[]), None);
        assert_eq!(v(&[("primary", Some("US")), ("registry", Some("US"))]), Some(Consensus::Agree));
        assert_eq!(v(&[("primary", Some("US")), ("registry", Some("SG"))]), Some(Consensus::Disagree));
        assert_eq!(v(&[("primary", Some("US")), ("registry", None)]), Some(Consensus::Partial));
        assert_eq!(v(&[("primary", None), ("registry", None)]), Some(Consensus::Partial));
        assert_eq!(
            v(&[("primary", Some("US")), ("registry", None), ("x", Some("SE"))]),
            Some(Consensus::Disagree),
            "a missing answer does not hide a disagreement"
        );
    }

    /// The names journals and JSON reports hold.
    #[test]
    fn names_are_the_ones_in_use() {
        crate::variant::assert_names(&[
            (Consensus::Agree, "agree"),
            (Consensus::Disagree, "disagree"),
            (Consensus::Partial, "partial"),
        ]);
    }
}
