//! Reports: per-app residency summaries from the journal.
