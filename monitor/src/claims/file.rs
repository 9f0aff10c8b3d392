//! The claims file: TOML, strict (`deny_unknown_fields`), validated into a [`ClaimSet`].
//! Every key is documented in `config/claims.example.toml`.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::Error;
use crate::files;

/// Largest claims file read (1 MiB).
pub const CLAIMS_MAX_BYTES: u64 = 1 << 20;

/// The keys of a claim that are rules (what its bytes may or must not go to): a claim needs at
/// least one, or it would PASS having checked nothing. The other keys select the traffic
/// (`apps`, `groups`, `exe`, `units`, `android_packages`) or describe it.
pub const RULE_KEYS: [&str; 9] = [
    "allowed_countries",
    "denied_countries",
    "allowed_asns",
    "denied_asns",
    "allowed_orgs",
    "denied_orgs",
    "allowed_hosts",
    "denied_hosts",
    "min_share",
];

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClaims {
    /// `[[claims]]`.
    pub claims: Vec<RawClaim>,
}

/// Which bytes a claim is about. Named by its serde derive (`upload`, `both`), also in messages
/// ([`Display`](std::fmt::Display)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Payload sent ("where does my data go").
    Upload,
    /// Payload sent and received.
    #[default]
    Both,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::variant::name(*self))
    }
}

impl Direction {
    /// The bytes of `(tx, rx)` this direction counts.
    #[must_use]
    pub fn bytes(self, tx: u64, rx: u64) -> u64 {
        match self {
            Self::Upload => tx,
            Self::Both => tx + rx,
        }
    }
}

/// One `[[claims]]` entry as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClaim {
    /// Unique name.
    pub name: String,
    /// Free text shown with the verdict.
    pub description: Option<String>,
    /// App names (as in reports).
    pub apps: Vec<String>,
    /// `[[apps]]` group names (the app name those entries give).
    pub groups: Vec<String>,
    /// Executable path globs.
    pub exe: Vec<String>,
    /// systemd unit globs.
    pub units: Vec<String>,
    /// Android package names (matched when records carry one).
    pub android_packages: Vec<String>,
    /// Which bytes count.
    pub direction: Direction,
    /// ISO 3166-1 alpha-2 codes the bytes may go to (empty: any).
    pub allowed_countries: Vec<String>,
    /// Codes the bytes must not go to.
    pub denied_countries: Vec<String>,
    /// ASNs the bytes may go to (with `allowed_orgs`: either matches).
    pub allowed_asns: Vec<u32>,
    /// ASNs the bytes must not go to.
    pub denied_asns: Vec<u32>,
    /// AS organisation globs the bytes may go to (case-insensitive).
    pub allowed_orgs: Vec<String>,
    /// AS organisation globs the bytes must not go to.
    pub denied_orgs: Vec<String>,
    /// Hostname / registrable-domain globs the bytes may go to (case-insensitive).
    pub allowed_hosts: Vec<String>,
    /// Hostname / registrable-domain globs the bytes must not go to.
    pub denied_hosts: Vec<String>,
    /// At least this share of the bytes goes to these destinations.
    pub min_share: Option<RawMinShare>,
    /// When a verdict cannot be given.
    pub inconclusive: Inconclusive,
}

/// `min_share = { percent = 99, countries = ["US"] }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMinShare {
    /// Minimum percentage (0 < percent ≤ 100).
    pub percent: f64,
    /// Countries that count towards the share.
    pub countries: Vec<String>,
    /// ASNs that count towards the share.
    pub asns: Vec<u32>,
    /// AS organisation globs that count towards the share.
    pub orgs: Vec<String>,
}

/// `[claims.inconclusive]`: thresholds past which a claim that is not violated is
/// `INCONCLUSIVE` instead of `PASS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inconclusive {
    /// Percentage of the claim's bytes whose country is unknown (when a country rule needs it).
    pub unknown_country_pct: f64,
    /// Percentage of the claim's bytes whose ASN is unknown (when an ASN/organisation rule needs it).
    pub unknown_asn_pct: f64,
    /// Percentage of the claim's bytes to destinations without a hostname (when a host rule needs it).
    pub unnamed_pct: f64,
    /// Events lost in the period (kernel ring buffer and journal drops) tolerated.
    pub lost_events: u64,
    /// Count bytes whose country the databases dispute as of unknown country.
    pub disputed_as_unknown: bool,
    /// No traffic of the selected apps in the period is `INCONCLUSIVE` (else `PASS`).
    pub no_traffic: bool,
}

impl Default for Inconclusive {
    fn default() -> Self {
        // 1 %: the example; no lost event tolerated (a lost flow could be the violating one).
        Self {
            unknown_country_pct: 1.0,
            unknown_asn_pct: 1.0,
            unnamed_pct: 1.0,
            lost_events: 0,
            disputed_as_unknown: true,
            no_traffic: true,
        }
    }
}

/// A case-insensitive glob list.
#[derive(Debug, Clone)]
pub struct Globs {
    /// As written.
    pub patterns: Vec<String>,
    set: GlobSet,
}

impl Globs {
    fn compile(claim: &str, key: &'static str, patterns: &[String], case_insensitive: bool) -> Result<Self, Error> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let glob = GlobBuilder::new(p)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|source| Error::Glob { claim: claim.to_string(), key, pattern: p.clone(), source })?;
            b.add(glob);
        }
        let set = b.build().map_err(|source| Error::Glob {
            claim: claim.to_string(),
            key,
            pattern: patterns.join(", "),
            source,
        })?;
        Ok(Self { patterns: patterns.to_vec(), set })
    }

    /// No patterns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `text` matches one of the patterns.
    #[must_use]
    pub fn matches(&self, text: &str) -> bool {
        self.set.is_match(text)
    }

    /// The patterns `text` matches, as written.
    pub fn matching(&self, text: &str) -> impl Iterator<Item = &str> {
        self.set.matches(text).into_iter().filter_map(|i| self.patterns.get(i).map(String::as_str))
    }
}

/// A validated minimum share.
#[derive(Debug, Clone)]
pub struct MinShare {
    /// Minimum percentage.
    pub percent: f64,
    /// Countries counting towards it.
    pub countries: Vec<String>,
    /// ASNs counting towards it.
    pub asns: Vec<u32>,
    /// Organisations counting towards it.
    pub orgs: Globs,
}

/// A validated claim.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// App and group names.
    pub apps: Vec<String>,
    /// Group names as written (also in `apps`): `[[apps]]` names, checked against the config
    /// ([`super::ClaimsConfig::load`]).
    pub groups: Vec<String>,
    /// Executable globs.
    pub exe: Globs,
    /// Unit globs.
    pub units: Globs,
    /// Android packages.
    pub android_packages: Vec<String>,
    /// Direction.
    pub direction: Direction,
    /// Allowed countries (upper case).
    pub allowed_countries: Vec<String>,
    /// Denied countries.
    pub denied_countries: Vec<String>,
    /// Allowed ASNs.
    pub allowed_asns: Vec<u32>,
    /// Denied ASNs.
    pub denied_asns: Vec<u32>,
    /// Allowed organisations.
    pub allowed_orgs: Globs,
    /// Denied organisations.
    pub denied_orgs: Globs,
    /// Allowed hosts.
    pub allowed_hosts: Globs,
    /// Denied hosts.
    pub denied_hosts: Globs,
    /// Minimum share.
    pub min_share: Option<MinShare>,
    /// Thresholds.
    pub inconclusive: Inconclusive,
}

/// Validated claims, in file order.
#[derive(Debug, Clone, Default)]
pub struct ClaimSet {
    /// The claims.
    pub claims: Vec<Claim>,
}

impl ClaimSet {
    /// Reads and validates a claims file.
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::Parse`] (unknown keys, wrong types), or a validation error
    /// naming the claim and key.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = files::read_regular_to_string(path, CLAIMS_MAX_BYTES)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates claims text; `path` only names the source in errors.
    ///
    /// # Errors
    /// As [`ClaimSet::load`]; [`Error::Empty`] when the file has no claim (a gate that checks
    /// nothing must not pass).
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let raw: RawClaims = toml::from_str(text)
            .map_err(|source| Error::Parse { path: path.to_path_buf(), source: Box::new(source) })?;
        if raw.claims.is_empty() {
            return Err(Error::Empty { path: path.to_path_buf() });
        }
        Self::compile(raw)
    }

    /// Validates parsed claims.
    ///
    /// # Errors
    /// A validation error naming the claim and key; [`Error::NoRule`] for a claim without a
    /// rule ([`RULE_KEYS`]).
    pub fn compile(raw: RawClaims) -> Result<Self, Error> {
        let mut claims: Vec<Claim> = Vec::with_capacity(raw.claims.len());
        for c in raw.claims {
            let claim = compile_claim(c)?;
            if claims.iter().any(|other| other.name == claim.name) {
                return Err(Error::Invalid { claim: claim.name, key: "name", reason: "used by two claims".into() });
            }
            claims.push(claim);
        }
        Ok(Self { claims })
    }
}

/// An ISO 3166-1 alpha-2 code, upper case: two ASCII letters, assigned or user-assigned
/// (`XK`, and `EU`/`AP` as some databases answer), never `ZZ`-style placeholders.
fn country(claim: &str, key: &'static str, code: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::Invalid {
        claim: claim.to_string(),
        key,
        reason: format!("`{code}` is not an ISO 3166-1 alpha-2 country code ({reason})"),
    };
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad("expected two letters, e.g. US"));
    }
    let upper = code.to_ascii_uppercase();
    if !super::iso::is_country(&upper) {
        return Err(bad("not an assigned code"));
    }
    Ok(upper)
}

fn countries(claim: &str, key: &'static str, codes: &[String]) -> Result<Vec<String>, Error> {
    codes.iter().map(|c| country(claim, key, c)).collect()
}

fn compile_claim(c: RawClaim) -> Result<Claim, Error> {
    let RawClaim {
        name,
        description,
        apps,
        groups,
        exe,
        units,
        android_packages,
        direction,
        allowed_countries,
        denied_countries,
        allowed_asns,
        denied_asns,
        allowed_orgs,
        denied_orgs,
        allowed_hosts,
        denied_hosts,
        min_share,
        inconclusive,
    } = c;
    let invalid = |key: &'static str, reason: String| Error::Invalid { claim: name.clone(), key, reason };
    if name.trim().is_empty() {
        return Err(invalid("name", "every claim needs a name".into()));
    }
    if apps.is_empty() && groups.is_empty() && exe.is_empty() && units.is_empty() && android_packages.is_empty() {
        return Err(invalid("apps", "select at least one app (apps, groups, exe, units or android_packages)".into()));
    }
    let allowed_countries = countries(&name, "allowed_countries", &allowed_countries)?;
    let denied_countries = countries(&name, "denied_countries", &denied_countries)?;
    if let Some(both) = allowed_countries.iter().find(|c| denied_countries.contains(c)) {
        return Err(invalid("denied_countries", format!("`{both}` is also in allowed_countries")));
    }
    if apps.iter().chain(&groups).chain(&android_packages).any(|a| a.trim().is_empty()) {
        return Err(invalid("apps", "an empty app, group or package name selects nothing".into()));
    }
    // Values no destination can have: the rule would silently check nothing.
    for (key, asns) in [("allowed_asns", &allowed_asns), ("denied_asns", &denied_asns)] {
        if asns.contains(&0) {
            return Err(invalid(key, "AS0 is reserved (RFC 7607): no address belongs to it".into()));
        }
    }
    for (key, patterns, host) in [
        ("exe", &exe, false),
        ("units", &units, false),
        ("allowed_orgs", &allowed_orgs, false),
        ("denied_orgs", &denied_orgs, false),
        ("allowed_hosts", &allowed_hosts, true),
        ("denied_hosts", &denied_hosts, true),
    ] {
        if patterns.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid(key, "an empty pattern matches nothing".into()));
        }
        if host && let Some(p) = patterns.iter().find(|p| p.contains(char::is_whitespace)) {
            return Err(invalid(key, format!("`{p}` can match no host name (host names have no spaces)")));
        }
    }
    if let Some(both) = allowed_asns.iter().find(|a| denied_asns.contains(a)) {
        return Err(invalid("denied_asns", format!("AS{both} is also in allowed_asns")));
    }
    for (key, t) in [
        ("unknown_country_pct", inconclusive.unknown_country_pct),
        ("unknown_asn_pct", inconclusive.unknown_asn_pct),
        ("unnamed_pct", inconclusive.unnamed_pct),
    ] {
        if !(0.0..=100.0).contains(&t) {
            return Err(invalid("inconclusive", format!("{key} = {t} is not between 0 and 100")));
        }
    }
    if allowed_countries.is_empty()
        && denied_countries.is_empty()
        && allowed_asns.is_empty()
        && denied_asns.is_empty()
        && allowed_orgs.is_empty()
        && denied_orgs.is_empty()
        && allowed_hosts.is_empty()
        && denied_hosts.is_empty()
        && min_share.is_none()
    {
        return Err(Error::NoRule { claim: name });
    }
    let min_share = match min_share {
        None => None,
        Some(RawMinShare { percent, countries: cs, asns, orgs }) => {
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(invalid(
                    "min_share",
                    format!("percent {percent} is impossible (expected 0 < percent ≤ 100)"),
                ));
            }
            if cs.is_empty() && asns.is_empty() && orgs.is_empty() {
                return Err(invalid("min_share", "names no destination (give countries, asns or orgs)".into()));
            }
            if asns.contains(&0) {
                return Err(invalid("min_share", "AS0 is reserved (RFC 7607): no address belongs to it".into()));
            }
            if orgs.iter().any(|o| o.trim().is_empty()) {
                return Err(invalid("min_share", "an empty organisation pattern matches nothing".into()));
            }
            let cs = countries(&name, "min_share.countries", &cs)?;
            if let Some(c) = cs.iter().find(|c| denied_countries.contains(c)) {
                return Err(invalid("min_share", format!("impossible: `{c}` is also in denied_countries")));
            }
            if !allowed_countries.is_empty()
                && let Some(c) = cs.iter().find(|c| !allowed_countries.contains(c))
            {
                return Err(invalid("min_share", format!("impossible: `{c}` is not in allowed_countries")));
            }
            if let Some(a) = asns.iter().find(|a| denied_asns.contains(a)) {
                return Err(invalid("min_share", format!("impossible: AS{a} is also in denied_asns")));
            }
            Some(MinShare { percent, countries: cs, asns, orgs: Globs::compile(&name, "min_share.orgs", &orgs, true)? })
        }
    };
    let mut app_names = apps;
    app_names.extend(groups.iter().cloned());
    for p in &exe {
        if let Some(problem) = crate::identity::rules::memory_pattern_problem(p) {
            log::warn!("claim `{}`: exe `{}`: {problem}", crate::escape::terminal(&name), crate::escape::terminal(p));
        }
    }
    Ok(Claim {
        exe: Globs::compile(&name, "exe", &exe, false)?,
        units: Globs::compile(&name, "units", &units, false)?,
        allowed_orgs: Globs::compile(&name, "allowed_orgs", &allowed_orgs, true)?,
        denied_orgs: Globs::compile(&name, "denied_orgs", &denied_orgs, true)?,
        allowed_hosts: Globs::compile(&name, "allowed_hosts", &allowed_hosts, true)?,
        denied_hosts: Globs::compile(&name, "denied_hosts", &denied_hosts, true)?,
        name,
        description,
        apps: app_names,
        groups,
        android_packages,
        direction,
        allowed_countries,
        denied_countries,
        allowed_asns,
        denied_asns,
        min_share,
        inconclusive,
    })
}
