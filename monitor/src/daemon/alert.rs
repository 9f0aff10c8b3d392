//! The structured warning of a live alert: one log line whose message carries `key=value`
//! pairs, and the same pairs as log key-values (journald fields `CLAIM`, `APP`, `DESTINATION`,
//! `COUNTRY`, `ASN` when stderr is the journal). Foreign text (app, executable) is escaped.

use log::warn;

use crate::{
    escape::{log_quoted, log_value, terminal},
    journal::AlertRow,
};

/// Logs a new alert.
pub(super) fn log(a: &AlertRow) {
    // Fields as the text is (escaped); in the message, values that cannot end their pair.
    let (claim, app) = (terminal(&a.claim), terminal(&a.app));
    let country = a.country.as_deref().map_or_else(|| "unknown".to_string(), terminal);
    let (claim_v, app_v, country_v) =
        (log_value(&a.claim), log_value(&a.app), log_value(a.country.as_deref().unwrap_or("unknown")));
    let asn = a.asn.map_or_else(|| "unknown".to_string(), |n| n.to_string());
    // Quoted always, as before.
    let (org, exe) =
        (log_quoted(a.as_org.as_deref().unwrap_or("unknown")), log_quoted(a.exe.as_deref().unwrap_or("unknown")));
    warn!(
        claim = claim.as_str(), app = app.as_str(), destination = a.destination.as_str(), country = country.as_str(),
        asn = asn.as_str(), rule = a.rule.as_str(), period = a.period.as_str();
        "claim violated claim={claim_v} app={app_v} destination={} country={country_v} asn={asn} org={org} rule={} \
         period={} exe={exe} pid={}",
        a.destination, a.rule, a.period, a.pid
    );
}
