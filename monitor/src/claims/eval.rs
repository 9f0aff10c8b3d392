//! Judging claims: one destination against a claim's rules ([`Claim::judge`], shared by the
//! batch verdicts and the live alerts), and every claim over a report ([`evaluate`]).

use std::{collections::BTreeSet, path::Path};

use super::{Claim, ClaimBytes, ClaimSet, ClaimVerdict, Summary, VERDICTS_SCHEMA, Verdict, Verdicts, Violation};
use crate::{
    identity::rules::{MEMORY_EXE_PREFIX, exe_as_matched},
    report::{DestinationDetail, ProcessUse, Report},
};

/// What the rules look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// A public address (looked up, or to be looked up); other scopes are exempt.
    pub public: bool,
    /// Country.
    pub country: Option<&'a str>,
    /// The databases dispute the country.
    pub country_disputed: bool,
    /// ASN.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<&'a str>,
    /// Hostname the app used.
    pub hostname: Option<&'a str>,
    /// Registrable domain of the hostname.
    pub registrable_domain: Option<&'a str>,
}

/// Whether a destination counts towards a `min_share`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareStatus {
    /// It does.
    In,
    /// It does not.
    Out,
    /// A needed fact is unknown.
    Unknown,
}

/// One destination judged against one claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judgement {
    /// Not a public address: not judged.
    pub exempt: bool,
    /// The first rule broken.
    pub violation: Option<&'static str>,
    /// A rule needed the country, which is unknown (or disputed).
    pub unknown_country: bool,
    /// A rule needed the ASN or organisation, which is unknown.
    pub unknown_asn: bool,
    /// A rule needed the hostname, which is unknown.
    pub unnamed: bool,
    /// Standing towards `min_share`, when the claim has one.
    pub share: Option<ShareStatus>,
}

impl Judgement {
    fn unknown(&self) -> bool {
        self.unknown_country || self.unknown_asn || self.unnamed
    }
}

impl Claim {
    /// Whether traffic of app `app` from a process with `exe`, `unit` and Android `package` is
    /// the claim's: any selector matching is enough.
    #[must_use]
    pub fn selects(&self, app: &str, exe: Option<&str>, unit: Option<&str>, package: Option<&str>) -> bool {
        self.apps.iter().any(|a| a == app)
            || exe.is_some_and(|e| {
                // A program run from memory (`memfd:<name>`) only by patterns for memory files,
                // as `[[apps]]` rules: `*/sbin/sshd` does not take a memfd named `usr/sbin/sshd`.
                let e = exe_as_matched(app, e);
                let memory = e.starts_with(MEMORY_EXE_PREFIX);
                self.exe.matching(e).any(|p| p.starts_with(MEMORY_EXE_PREFIX) == memory)
            })
            || unit.is_some_and(|u| self.units.matches(u))
            || package.is_some_and(|p| self.android_packages.iter().any(|x| x == p))
    }

    /// Judges one destination. A rule is broken only on known facts; a rule that needs an
    /// unknown fact marks the destination as unknown for that fact instead.
    #[must_use]
    pub fn judge(&self, f: &Facts<'_>) -> Judgement {
        let mut j = Judgement::default();
        if !f.public {
            j.exempt = true;
            return j;
        }
        let broken = |rule: &'static str, j: &mut Judgement| {
            if j.violation.is_none() {
                j.violation = Some(rule);
            }
        };
        let country = f.country.filter(|_| !(f.country_disputed && self.inconclusive.disputed_as_unknown));
        if !self.allowed_countries.is_empty() || !self.denied_countries.is_empty() {
            match country {
                Some(c) if self.denied_countries.iter().any(|d| d == c) => broken("denied_countries", &mut j),
                Some(c) if !self.allowed_countries.is_empty() && !self.allowed_countries.iter().any(|a| a == c) => {
                    broken("allowed_countries", &mut j);
                }
                Some(_) => {}
                None => j.unknown_country = true,
            }
        }
        if !self.denied_asns.is_empty() {
            match f.asn {
                Some(a) if self.denied_asns.contains(&a) => broken("denied_asns", &mut j),
                Some(_) => {}
                None => j.unknown_asn = true,
            }
        }
        if !self.denied_orgs.is_empty() {
            match f.as_org {
                Some(o) if self.denied_orgs.matches(o) => broken("denied_orgs", &mut j),
                Some(_) => {}
                None => j.unknown_asn = true,
            }
        }
        let (by_asn, by_org) = (!self.allowed_asns.is_empty(), !self.allowed_orgs.is_empty());
        if by_asn || by_org {
            let asn_ok = by_asn && f.asn.is_some_and(|a| self.allowed_asns.contains(&a));
            let org_ok = by_org && f.as_org.is_some_and(|o| self.allowed_orgs.matches(o));
            let missing = (by_asn && f.asn.is_none()) || (by_org && f.as_org.is_none());
            if !asn_ok && !org_ok {
                if missing {
                    j.unknown_asn = true;
                } else {
                    broken("allowed_networks", &mut j);
                }
            }
        }
        let host_matches = |g: &super::file::Globs| {
            f.hostname.is_some_and(|h| g.matches(h)) || f.registrable_domain.is_some_and(|d| g.matches(d))
        };
        if !self.denied_hosts.is_empty() {
            if host_matches(&self.denied_hosts) {
                broken("denied_hosts", &mut j);
            } else if f.hostname.is_none() {
                j.unnamed = true;
            }
        }
        if !self.allowed_hosts.is_empty() {
            if f.hostname.is_none() {
                j.unnamed = true;
            } else if !host_matches(&self.allowed_hosts) {
                broken("allowed_hosts", &mut j);
            }
        }
        if let Some(m) = &self.min_share {
            let inside = country.is_some_and(|c| m.countries.iter().any(|x| x == c))
                || f.asn.is_some_and(|a| m.asns.contains(&a))
                || f.as_org.is_some_and(|o| m.orgs.matches(o));
            let no_country = !m.countries.is_empty() && country.is_none();
            let no_asn = (!m.asns.is_empty() && f.asn.is_none()) || (!m.orgs.is_empty() && f.as_org.is_none());
            j.share = Some(if inside {
                ShareStatus::In
            } else if no_country || no_asn {
                j.unknown_country |= no_country;
                j.unknown_asn |= no_asn;
                ShareStatus::Unknown
            } else {
                ShareStatus::Out
            });
        }
        j
    }
}

/// Percentage with two decimals (0 when `whole` is 0).
fn pct(part: u64, whole: u64) -> f64 {
    round(exact_pct(part, whole), 2)
}

/// Percentage, unrounded (0 when `whole` is 0): what thresholds are compared with.
fn exact_pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52 in practice; a percentage")]
    let p = part as f64 * 100.0 / whole as f64;
    p
}

fn round(v: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (v * scale).round() / scale
}

/// `part` of `whole` as a percentage for a sentence that compares it with `limit`: two decimals,
/// more where two would not compare with the limit as the figure does (49.996 % is not "50 %"
/// below a 50 % minimum, 9.9326 % not "9.93 %" above 9.932 %).
fn pct_against(part: u64, whole: u64, limit: f64) -> f64 {
    let exact = exact_pct(part, whole);
    let side = exact.partial_cmp(&limit);
    (2..=6).map(|d| round(exact, d)).find(|shown| shown.partial_cmp(&limit) == side).unwrap_or(exact)
}

/// Judges every claim of `set` over `report`, which must have been built with evidence
/// ([`ReportQuery::evidence`](crate::report::ReportQuery::evidence)): claims are judged on
/// each app's destinations.
#[must_use]
pub fn evaluate(set: &ClaimSet, report: &Report, claims_file: Option<&Path>) -> Verdicts {
    let lost = report.completeness.events_lost + report.completeness.journal_dropped_records;
    let claims: Vec<ClaimVerdict> = set.claims.iter().map(|c| evaluate_claim(c, report, lost)).collect();
    let mut summary = Summary::default();
    for c in &claims {
        match c.verdict {
            Verdict::Pass => summary.pass += 1,
            Verdict::Fail => summary.fail += 1,
            Verdict::Inconclusive => summary.inconclusive += 1,
        }
    }
    Verdicts {
        schema: VERDICTS_SCHEMA,
        period: report.period.clone(),
        claims_file: claims_file.map(|p| p.display().to_string()),
        generated_at: report.generated_at,
        summary,
        lost_events: lost,
        claims,
    }
}

/// A destination restricted to the claim's processes, with its judgement.
struct Entry {
    app: String,
    bytes: u64,
    detail: DestinationDetail,
    judgement: Judgement,
}

fn restrict(d: &DestinationDetail, procs: Vec<ProcessUse>) -> DestinationDetail {
    let mut r = DestinationDetail { processes: Vec::new(), ..d.clone() };
    (r.payload_tx, r.payload_rx, r.wire_tx, r.wire_rx, r.flows) = (0, 0, 0, 0, 0);
    for p in &procs {
        r.payload_tx += p.payload_tx;
        r.payload_rx += p.payload_rx;
        r.wire_tx += p.wire_tx;
        r.wire_rx += p.wire_rx;
        r.flows += p.flows;
    }
    r.processes = procs;
    r
}

/// Whether `d`'s host name is another process's DNS answer for the address (`dns_host`).
fn other_process_name(d: &DestinationDetail) -> bool {
    d.name_source() == Some(crate::names::NameSource::DnsHost)
}

fn facts(d: &DestinationDetail) -> Facts<'_> {
    Facts {
        // Public, or not looked up (`unenriched`: an address no run enriched, judged as public).
        public: d.public_or_unenriched(),
        country: d.country.as_deref(),
        country_disputed: d.country_disputed,
        asn: d.asn,
        as_org: d.as_org.as_deref(),
        // Another process's DNS answer for the address says nothing of the name this app used.
        hostname: d.hostname.as_deref().filter(|_| !other_process_name(d)),
        registrable_domain: d.registrable_domain.as_deref().filter(|_| !other_process_name(d)),
    }
}

/// The name the kernel gives a process of app `name` whose executable was not read: its first
/// 15 bytes (`TASK_COMM_LEN` less the NUL), written as the tracker writes the kernel's name (a
/// cut inside a UTF-8 character as `\xNN`), when `name` is longer (a shorter name is the same).
fn kernel_name_of(name: &str) -> Option<String> {
    const COMM: usize = 15;
    let bytes = name.as_bytes();
    bytes.get(..COMM).filter(|_| bytes.len() > COMM).map(|b| crate::escape::utf8_or_hex(b).into_owned())
}

fn evaluate_claim(claim: &Claim, report: &Report, lost: u64) -> ClaimVerdict {
    let dir = claim.direction;
    let mut entries = Vec::new();
    let mut apps = BTreeSet::new();
    // A claim that selects by executable, unit or `[[apps]]` group cannot tell whether a process
    // whose executable is unknown (gone before /proc was read) is one of its own: such traffic
    // to a destination that breaks a rule keeps the claim from passing. (A group's rules may
    // name executables, units or cgroups: such a process is named by the kernel's name, not the
    // group's.)
    let by_identity = !claim.exe.is_empty() || !claim.units.is_empty() || !claim.groups.is_empty();
    let mut unidentified_violating = 0;
    for app in &report.apps {
        // An app named by the kernel's 15-byte name that is the start of an app name the claim
        // selects may be that app's processes, gone before /proc was read (an adversarial pass:
        // such traffic was another app's, and the claim passed).
        let truncated = claim.apps.iter().any(|a| kernel_name_of(a).is_some_and(|k| k == app.app));
        for d in &app.destinations {
            let (procs, others): (Vec<ProcessUse>, Vec<ProcessUse>) = d
                .processes
                .iter()
                .cloned()
                .partition(|p| claim.selects(&app.app, p.exe.as_deref(), p.unit.as_deref(), p.package.as_deref()));
            let unidentified: Vec<ProcessUse> =
                others.into_iter().filter(|p| (by_identity || truncated) && p.exe.is_none()).collect();
            if !unidentified.is_empty() {
                let detail = restrict(d, unidentified);
                if claim.judge(&facts(&detail)).violation.is_some() {
                    unidentified_violating += dir.bytes(detail.payload_tx, detail.payload_rx);
                }
            }
            if procs.is_empty() {
                continue;
            }
            apps.insert(app.app.clone());
            let detail = restrict(d, procs);
            let bytes = dir.bytes(detail.payload_tx, detail.payload_rx);
            let judgement = claim.judge(&facts(&detail));
            entries.push(Entry { app: app.app.clone(), bytes, detail, judgement });
        }
    }
    let mut b = ClaimBytes {
        total: entries.iter().map(|e| e.bytes).sum(),
        exempt: entries.iter().filter(|e| e.judgement.exempt).map(|e| e.bytes).sum(),
        unidentified_violating,
        ..ClaimBytes::default()
    };
    let judged = b.total - b.exempt;
    let mut reasons = Vec::new();

    // min_share: decided on the judged bytes before the other buckets.
    let (mut share_fail, mut min_share_pct) = (false, None);
    if let Some(m) = &claim.min_share {
        let sum =
            |s: ShareStatus| entries.iter().filter(|e| e.judgement.share == Some(s)).map(|e| e.bytes).sum::<u64>();
        let (inside, unknown) = (sum(ShareStatus::In), sum(ShareStatus::Unknown));
        min_share_pct = Some(pct_against(inside, judged, m.percent));
        #[expect(clippy::cast_precision_loss, reason = "comparison of percentages")]
        let reaches = |bytes: u64| bytes as f64 * 100.0 >= m.percent * judged as f64;
        if judged > 0 && !reaches(inside) {
            if reaches(inside + unknown) {
                reasons.push(format!(
                    "{} % of the {dir} bytes go to the min_share destinations, below {} %, and {} % are of unknown \
                     destination",
                    pct_against(inside, judged, m.percent),
                    m.percent,
                    pct(unknown, judged)
                ));
            } else {
                share_fail = true;
                reasons.push(format!(
                    "only {} % of the {dir} bytes go to the min_share destinations (at least {} % claimed)",
                    pct_against(inside, judged, m.percent),
                    m.percent
                ));
            }
        }
    }

    let mut violations = Vec::new();
    // Connections to destinations the claim forbids that moved no payload the claim judges
    // (e.g. a handshake only): no data went there, so no violation, but said.
    let (mut contacts, mut contacted) = (0, BTreeSet::new());
    for e in entries {
        let j = e.judgement;
        if j.exempt {
            continue;
        }
        if e.bytes == 0 {
            if j.violation.is_some() {
                contacts += e.detail.flows;
                contacted.insert(e.detail.ip);
            }
            continue;
        }
        let rule = j.violation.or((share_fail && j.share == Some(ShareStatus::Out)).then_some("min_share"));
        if let Some(rule) = rule {
            b.violating += e.bytes;
            violations.push(Violation { app: e.app, rule, bytes: e.bytes, destination: e.detail });
        } else if j.unknown() {
            b.unknown_country += if j.unknown_country { e.bytes } else { 0 };
            b.unknown_asn += if j.unknown_asn { e.bytes } else { 0 };
            b.unnamed += if j.unnamed { e.bytes } else { 0 };
        } else {
            b.satisfying += e.bytes;
        }
    }
    violations.sort_by(|a, b| {
        b.bytes.cmp(&a.bytes).then_with(|| (&a.destination.ip, &a.app).cmp(&(&b.destination.ip, &b.app)))
    });

    let t = &claim.inconclusive;
    // As the sentences say them: never rounded onto the other side of their threshold.
    let (uc, ua, un) = (
        pct_against(b.unknown_country, judged, t.unknown_country_pct),
        pct_against(b.unknown_asn, judged, t.unknown_asn_pct),
        pct_against(b.unnamed, judged, t.unnamed_pct),
    );
    let verdict = if b.violating > 0 {
        let n: BTreeSet<&str> = violations.iter().map(|v| v.destination.ip.as_str()).collect();
        reasons.insert(0, format!("{} {dir} bytes go to {} violating destination(s)", b.violating, n.len()));
        Verdict::Fail
    } else {
        if b.total == 0 && t.no_traffic {
            reasons.push("no traffic of the selected apps in the period".into());
        }
        // Compared unrounded: 9.9326 % is more than 9.932 % (an adversarial pass: the rounded
        // 9.93 was compared, and the claim passed).
        for (what, bytes, limit) in [
            ("an unknown country", b.unknown_country, t.unknown_country_pct),
            ("an unknown ASN or organisation", b.unknown_asn, t.unknown_asn_pct),
            ("no known hostname", b.unnamed, t.unnamed_pct),
        ] {
            if exact_pct(bytes, judged) > limit {
                let value = pct_against(bytes, judged, limit);
                reasons.push(format!("{value} % of the judged bytes have {what} (more than {limit} %)"));
            }
        }
        if lost > t.lost_events {
            reasons.push(format!("{lost} events were lost in the period (at most {} tolerated)", t.lost_events));
        }
        if b.unidentified_violating > 0 {
            reasons.push(format!(
                "{} {dir} bytes of processes whose executable is unknown (they ended before it was read) go to \
                 destinations this claim forbids; they may be the selected apps'",
                b.unidentified_violating
            ));
        }
        if reasons.is_empty() { Verdict::Pass } else { Verdict::Inconclusive }
    };
    if contacts > 0 {
        reasons.push(format!(
            "{contacts} connection(s) to {} destination(s) this claim forbids moved no {dir} payload (not a violation: \
             claims judge payload; the report's endpoints list them)",
            contacted.len()
        ));
    }
    ClaimVerdict {
        claim: claim.name.clone(),
        description: claim.description.clone(),
        verdict,
        reasons,
        direction: dir,
        apps: apps.into_iter().collect(),
        bytes: b,
        unknown_country_pct: uc,
        unknown_asn_pct: ua,
        unnamed_pct: un,
        min_share_pct,
        violations,
    }
}
