//! Registrable domains ("tiktokv.com" for "api16-normal-useast5.us.tiktokv.com") from the public
//! suffix list bundled in the `psl` crate (no file, no download; updated with the crate).
//!
//! Unknown top-level domains follow the list's default rule (`*`): the registrable domain of
//! `host.test` is `host.test`. A bare public suffix ("com", "co.uk") has none.

/// The registrable domain of `host` (expected lowercase, as [`super::Hostname`] is), or `None`
/// for a public suffix, a single label, or an IP literal.
#[must_use]
pub fn registrable(host: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return None;
    }
    psl::domain_str(host).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::registrable;

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(registrable("api16-normal-useast5.us.tiktokv.com").as_deref(), Some("tiktokv.com"));
        assert_eq!(registrable("www.bbc.co.uk").as_deref(), Some("bbc.co.uk"));
        assert_eq!(registrable("bbc.co.uk.").as_deref(), Some("bbc.co.uk"));
        // Private section of the list: each github.io user is its own registrable domain.
        assert_eq!(registrable("a.b.someone.github.io").as_deref(), Some("someone.github.io"));
        assert_eq!(registrable("app.test").as_deref(), Some("app.test"));
        assert_eq!(registrable("co.uk"), None);
        assert_eq!(registrable("com"), None);
        assert_eq!(registrable("localhost"), None);
        assert_eq!(registrable("192.0.2.1"), None);
        assert_eq!(registrable(""), None);
    }
}
