//! The structured warning of a live alert: one log line whose message carries `key=value`
//! pairs, and the same pairs as log key-values (journald fields `CLAIM`, `APP`, `DESTINATION`,
//! `COUNTRY`, `ASN` when stderr is the journal). Foreign text (app, executable) is escaped.

use log::warn;

use crate::{escape::terminal, journal::AlertRow};

/// Logs a new alert.
pub(super) fn log(a: &AlertRow) {
    let (claim, app) = (terminal(&a.claim), terminal(&a.app));
    let country = a.country.as_deref().map_or_else(|| "unknown".to_string(), terminal);
    let asn = a.asn.map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let org = a.as_org.as_deref().map_or_else(|| "unknown".to_string(), terminal);
    let exe = a.exe.as_deref().map_or_else(|| "unknown".to_string(), terminal);
    warn!(
        claim = claim.as_str(), app = app.as_str(), destination = a.destination.as_str(), country = country.as_str(),
        asn = asn.as_str(), rule = a.rule.as_str(), period = a.period.as_str();
        "claim violated claim={claim} app={app} destination={} country={country} asn={asn} org={org:?} rule={} \
         period={} exe={exe:?} pid={}",
        a.destination, a.rule, a.period, a.pid
    );
}
