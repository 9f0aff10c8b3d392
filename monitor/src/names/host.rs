//! Validated host names: the only form in which a name from the wire leaves this module.
//!
//! Names come from other processes' packets and are hostile. A [`Hostname`] is ASCII, lowercase,
//! without a trailing dot, at most 253 bytes, made of 1–63 byte labels of letters, digits, `-`
//! and `_` (service labels). Anything else (control characters, spaces, escapes, non-ASCII
//! bytes, empty labels) is rejected, never repaired: a rejected name is counted as malformed.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest host name in presentation form without the trailing dot (RFC 1035 §2.3.4: 255
/// octets on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a host name was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    /// Empty, or only a dot.
    #[error("empty host name")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("host name longer than {MAX_NAME_LEN} bytes ({len})")]
    TooLong {
        /// Length in bytes.
        len: usize,
    },
    /// A label is empty or longer than [`MAX_LABEL_LEN`].
    #[error("host name label of {len} bytes")]
    BadLabel {
        /// Length of the label in bytes.
        len: usize,
    },
    /// A name given in Unicode that UTS 46 cannot map to an ASCII form.
    #[error("not a valid internationalised host name (UTS 46)")]
    NotIdna,
    /// A byte other than a letter, digit, `-`, `_` or a separating dot.
    #[error("host name byte 0x{byte:02x} not allowed")]
    BadByte {
        /// The first offending byte.
        byte: u8,
    },
}

/// A validated, lowercase host name (cheap to clone: shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(Arc<str>);

impl Hostname {
    /// Validates and normalises a name from the wire: lowercases ASCII letters and strips one
    /// trailing dot.
    ///
    /// # Errors
    /// [`HostnameError`] when the name breaks a rule in the module header.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, HostnameError> {
        let raw = raw.strip_suffix(b".").unwrap_or(raw);
        if raw.is_empty() {
            return Err(HostnameError::Empty);
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(HostnameError::TooLong { len: raw.len() });
        }
        if let Some(&byte) = raw.iter().find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))) {
            return Err(HostnameError::BadByte { byte });
        }
        if let Some(label) = raw.split(|b| *b == b'.').find(|l| l.is_empty() || l.len() > MAX_LABEL_LEN) {
            return Err(HostnameError::BadLabel { len: label.len() });
        }
        let lower: String = raw.iter().map(|b| char::from(b.to_ascii_lowercase())).collect();
        Ok(Self(lower.into()))
    }

    /// [`Hostname::from_bytes`] for text.
    ///
    /// # Errors
    /// As [`Hostname::from_bytes`].
    pub fn parse(raw: &str) -> Result<Self, HostnameError> {
        Self::from_bytes(raw.as_bytes())
    }

    /// A name a person typed: an internationalised one (`Bücher.example`) is taken in the
    /// ASCII form DNS answers and server names carry (`xn--bcher-kva.example`, UTS 46 with
    /// its mapping: case, full-width letters); an ASCII one as [`Hostname::parse`] takes it.
    ///
    /// # Errors
    /// [`HostnameError::NotIdna`] when UTS 46 refuses the name, else as [`Hostname::parse`].
    pub fn from_user(raw: &str) -> Result<Self, HostnameError> {
        if raw.is_ascii() {
            return Self::parse(raw);
        }
        let ascii = idna::domain_to_ascii(raw).map_err(|_| HostnameError::NotIdna)?;
        Self::parse(&ascii)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Hostname {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hostname {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_lowercased_and_lose_the_trailing_dot() {
        assert_eq!(Hostname::parse("API16-Normal.TikTokv.com.").unwrap().as_str(), "api16-normal.tiktokv.com");
        assert_eq!(Hostname::parse("_dns.resolver.arpa").unwrap().as_str(), "_dns.resolver.arpa");
    }

    #[test]
    fn internationalised_names_typed_by_a_person_take_their_ascii_form() {
        let ascii = |s: &str| Hostname::from_user(s).map(|h| h.as_str().to_owned());
        assert_eq!(ascii("bücher.example").as_deref(), Ok("xn--bcher-kva.example"));
        assert_eq!(ascii("BÜCHER.Example.").as_deref(), Ok("xn--bcher-kva.example"));
        // Full-width letters and the ideographic full stop map to their ASCII forms.
        assert_eq!(ascii("ｅｘａｍｐｌｅ。com").as_deref(), Ok("example.com"));
        assert_eq!(ascii("例え.テスト").as_deref(), Ok("xn--r8jz45g.xn--zckzah"));
        assert_eq!(ascii("xn--bcher-kva.example").as_deref(), Ok("xn--bcher-kva.example"));
        // Refused by UTS 46 (a bidi rule, a forbidden code point), or after it as any name.
        assert_eq!(ascii("a\u{202e}b.example"), Err(HostnameError::NotIdna));
        assert_eq!(ascii("bücher..example"), Err(HostnameError::BadLabel { len: 0 }));
        assert_eq!(ascii("bad name.é"), Err(HostnameError::BadByte { byte: b' ' }));
    }

    #[test]
    fn hostile_hostnames_are_rejected() {
        assert_eq!(Hostname::parse(""), Err(HostnameError::Empty));
        assert_eq!(Hostname::parse("."), Err(HostnameError::Empty));
        assert_eq!(Hostname::parse("a..b"), Err(HostnameError::BadLabel { len: 0 }));
        assert_eq!(Hostname::parse("a.b.."), Err(HostnameError::BadLabel { len: 0 }));
        assert_eq!(Hostname::parse("evil\x1b[31m.com"), Err(HostnameError::BadByte { byte: 0x1b }));
        assert_eq!(Hostname::parse("a b.com"), Err(HostnameError::BadByte { byte: b' ' }));
        assert_eq!(Hostname::from_bytes(b"caf\xc3\xa9.fr"), Err(HostnameError::BadByte { byte: 0xc3 }));
        let label = "a".repeat(64);
        assert_eq!(Hostname::parse(&format!("{label}.com")), Err(HostnameError::BadLabel { len: 64 }));
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(Hostname::parse(&long), Err(HostnameError::TooLong { len: 255 }));
        let max = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
        assert_eq!(Hostname::parse(&max).unwrap().as_str().len(), MAX_NAME_LEN);
    }

    #[test]
    fn hostnames_round_trip_through_serde_and_reject_bad_input() {
        let h = Hostname::parse("Example.COM").unwrap();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"example.com\"");
        assert_eq!(serde_json::from_str::<Hostname>(&json).unwrap(), h);
        assert!(serde_json::from_str::<Hostname>("\"bad\\u0000name\"").is_err());
    }
}
