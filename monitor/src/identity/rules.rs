//! App grouping: `[[apps]]` rules of the config group processes under one name (e.g. every
//! helper process of a browser). The first rule with a matching criterion wins.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// One `[[apps]]` entry as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AppRule {
    /// Name shown in reports.
    pub name: String,
    /// Executable paths (globs, e.g. "/usr/lib/firefox/*").
    pub exe: Vec<String>,
    /// Process names (`comm`, exact, at most 15 characters).
    pub comm: Vec<String>,
    /// systemd units (globs, e.g. "firefox*.scope").
    pub unit: Vec<String>,
    /// User ids.
    pub uid: Vec<u32>,
    /// cgroup paths (globs, e.g. "/user.slice/*/app-firefox*").
    pub cgroup: Vec<String>,
}

/// Errors in `[[apps]]`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule without a name or without any criterion.
    #[error("[[apps]] entry {index}: {reason}")]
    Invalid {
        /// Position in the config (0-based).
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A glob that does not parse.
    #[error("[[apps]] entry `{name}`: invalid pattern `{pattern}`")]
    Glob {
        /// Rule name.
        name: String,
        /// The pattern.
        pattern: String,
        /// Parser error.
        #[source]
        source: globset::Error,
    },
}

struct Compiled {
    name: String,
    exe: GlobSet,
    comm: Vec<String>,
    unit: GlobSet,
    uid: Vec<u32>,
    cgroup: GlobSet,
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// Executable path.
    pub exe: Option<&'a str>,
    /// `comm`.
    pub comm: &'a str,
    /// systemd unit.
    pub unit: Option<&'a str>,
    /// User id.
    pub uid: u32,
    /// cgroup path.
    pub cgroup: Option<&'a str>,
}

/// Compiled rules.
#[derive(Default)]
pub struct AppRules {
    rules: Vec<Compiled>,
}

impl std::fmt::Debug for AppRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.rules.iter().map(|r| &r.name)).finish()
    }
}

fn globs(name: &str, patterns: &[String]) -> Result<GlobSet, Error> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|source| Error::Glob { name: name.into(), pattern: p.clone(), source })?;
        b.add(glob);
    }
    b.build().map_err(|source| Error::Glob { name: name.into(), pattern: patterns.join(", "), source })
}

impl AppRules {
    /// Validates and compiles the rules.
    ///
    /// # Errors
    /// A rule without a name or criterion, or a bad glob.
    pub fn compile(rules: &[AppRule]) -> Result<Self, Error> {
        let mut out = Vec::new();
        for (index, r) in rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(Error::Invalid { index, reason: "`name` is empty".into() });
            }
            if r.exe.is_empty() && r.comm.is_empty() && r.unit.is_empty() && r.uid.is_empty() && r.cgroup.is_empty() {
                return Err(Error::Invalid { index, reason: format!("`{}` has no exe, comm, unit, uid or cgroup", r.name) });
            }
            out.push(Compiled {
                name: r.name.clone(),
                exe: globs(&r.name, &r.exe)?,
                comm: r.comm.clone(),
                unit: globs(&r.name, &r.unit)?,
                uid: r.uid.clone(),
                cgroup: globs(&r.name, &r.cgroup)?,
            });
        }
        Ok(Self { rules: out })
    }

    /// Name of the first matching rule.
    #[must_use]
    pub fn name_for(&self, s: &Subject<'_>) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| {
                s.exe.is_some_and(|e| r.exe.is_match(e))
                    || r.comm.iter().any(|c| c == s.comm)
                    || s.unit.is_some_and(|u| r.unit.is_match(u))
                    || r.uid.contains(&s.uid)
                    || s.cgroup.is_some_and(|c| r.cgroup.is_match(c))
            })
            .map(|r| r.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str) -> AppRule {
        AppRule { name: name.into(), ..AppRule::default() }
    }

    #[test]
    fn first_matching_rule_wins_on_any_criterion() {
        let rules = AppRules::compile(&[
            AppRule { exe: vec!["/usr/lib/firefox/*".into()], comm: vec!["Web Content".into()], ..rule("firefox") },
            AppRule { unit: vec!["nginx*.service".into()], ..rule("web server") },
            AppRule { uid: vec![4242], ..rule("test user") },
            AppRule { cgroup: vec!["/system.slice/docker-*.scope".into()], ..rule("containers") },
        ])
        .unwrap();
        let s = |exe, comm, unit, uid, cgroup| Subject { exe, comm, unit, uid, cgroup };
        assert_eq!(rules.name_for(&s(Some("/usr/lib/firefox/firefox"), "firefox", None, 1000, None)), Some("firefox"));
        assert_eq!(rules.name_for(&s(Some("/opt/other"), "Web Content", None, 1000, None)), Some("firefox"));
        assert_eq!(rules.name_for(&s(None, "nginx", Some("nginx.service"), 33, None)), Some("web server"));
        assert_eq!(rules.name_for(&s(None, "x", None, 4242, None)), Some("test user"));
        assert_eq!(rules.name_for(&s(None, "x", None, 1, Some("/system.slice/docker-abc.scope"))), Some("containers"));
        assert_eq!(rules.name_for(&s(Some("/usr/bin/curl"), "curl", None, 1000, None)), None);
    }

    #[test]
    fn empty_or_invalid_rules_are_errors() {
        assert!(AppRules::compile(&[rule("nothing")]).unwrap_err().to_string().contains("no exe"));
        assert!(AppRules::compile(&[AppRule { comm: vec!["a".into()], ..rule(" ") }]).is_err());
        let err = AppRules::compile(&[AppRule { exe: vec!["[".into()], ..rule("bad") }]).unwrap_err();
        assert!(err.to_string().contains("invalid pattern"), "{err}");
    }
}
