//! App grouping: `[[apps]]` rules of the config group processes under one name (e.g. every
//! helper process of a browser). The first rule with a matching criterion wins.

use std::collections::HashMap;

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
    /// Android packages (globs, e.g. "com.zhiliaoapp.*"): matches a UID any of whose packages
    /// (shared UIDs have several; an SDK sandbox has its app's) matches.
    pub package: Vec<String>,
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
    /// More rules than [`MAX_RULES`].
    #[error("[[apps]] has {count} entries; at most {MAX_RULES} are accepted")]
    TooMany {
        /// Entries in the config.
        count: usize,
    },
    /// More glob patterns than [`MAX_GLOBS`].
    #[error("[[apps]] has {count} glob patterns; at most {MAX_GLOBS} are accepted (literal patterns do not count)")]
    TooManyGlobs {
        /// Glob patterns in the config.
        count: usize,
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

/// Most `[[apps]]` rules accepted: far more than any grouping needs.
pub const MAX_RULES: usize = 10_000;
/// Longest process name (`comm`) the kernel keeps: `TASK_COMM_LEN` (16) less its NUL.
const MAX_COMM_LEN: usize = 15;
/// Most glob patterns (exe, unit, cgroup and package patterns with `*?[]{}\\`, over all rules) accepted.
/// Literal patterns, `comm` names and uids go to hash maps and cost little; globs are compiled
/// into automata: 10,000 of them take ~0.15 s and ~40 MiB (release build).
pub const MAX_GLOBS: usize = 10_000;

/// Whether `pattern` needs glob matching (else it is compared literally).
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// The patterns of one field over all rules: literal patterns in a hash map, the rest in one
/// [`GlobSet`] (one automaton for every rule, not one per rule). Values are rule indexes; the
/// smallest matching index wins.
#[derive(Default, Clone)]
struct FieldIndex {
    exact: HashMap<String, usize>,
    globs: GlobSet,
    /// Rule index of each glob in `globs`, in insertion order.
    glob_rules: Vec<usize>,
}

impl FieldIndex {
    fn build(field: &str, rules: &[AppRule], patterns: impl Fn(&AppRule) -> &[String]) -> Result<Self, Error> {
        let mut exact = HashMap::new();
        let mut builder = GlobSetBuilder::new();
        let mut glob_rules = Vec::new();
        for (index, rule) in rules.iter().enumerate() {
            for p in patterns(rule) {
                let glob = Glob::new(p).map_err(|source| Error::Glob {
                    name: rule.name.clone(),
                    pattern: p.clone(),
                    source,
                })?;
                if is_glob(p) {
                    builder.add(glob);
                    glob_rules.push(index);
                } else {
                    exact.entry(p.clone()).or_insert(index);
                }
            }
        }
        let globs = builder.build().map_err(|source| Error::Glob {
            name: format!("({field} patterns)"),
            pattern: String::new(),
            source,
        })?;
        Ok(Self { exact, globs, glob_rules })
    }

    /// Smallest index of a rule with a pattern matching `value`.
    fn first(&self, value: &str) -> Option<usize> {
        let exact = self.exact.get(value).copied();
        let glob = if self.glob_rules.is_empty() {
            None
        } else {
            self.globs.matches(value).into_iter().filter_map(|i| self.glob_rules.get(i).copied()).min()
        };
        exact.into_iter().chain(glob).min()
    }
}

/// How the executable of a program run from memory reads (`memfd:<name>`, see
/// `identity::process`): only rule patterns that start so match it, and they match nothing else
/// (a pattern for paths such as `*/sbin/sshd` would otherwise take a memory file its program
/// named `usr/sbin/sshd`).
pub const MEMORY_EXE_PREFIX: &str = "memfd:";

/// The exe of a record as patterns are matched against it: a program run from memory as
/// [`MEMORY_EXE_PREFIX`] and its name, also in journals written before it read so (its exe was
/// `/memfd:<name>` and its app `memfd:<name>`; a review: old records were still taken by patterns
/// for paths).
#[must_use]
pub fn exe_as_matched<'a>(app: &str, exe: &'a str) -> &'a str {
    match exe.strip_prefix('/') {
        Some(memory) if memory.starts_with(MEMORY_EXE_PREFIX) && memory == app => memory,
        _ => exe,
    }
}

/// Why an exe pattern cannot do what it seems to: one for the memory files' old form
/// (`/memfd:…`), or one naming `memfd:` elsewhere than at its start (only patterns that start
/// with it are matched against programs run from memory). `None` for any other pattern.
#[must_use]
pub fn memory_pattern_problem(pattern: &str) -> Option<&'static str> {
    if pattern.starts_with(MEMORY_EXE_PREFIX) || !pattern.contains(MEMORY_EXE_PREFIX) {
        None
    } else {
        Some(
            "a program run from memory has the exe `memfd:<name>` and is matched only by patterns that start with \
             `memfd:`; this one never matches one",
        )
    }
}

/// The rules with only their exe patterns for programs run from memory (`memory`) or for
/// paths (the rest), in place: indexes stay the rules'.
fn exe_patterns(rules: &[AppRule], memory: bool) -> Vec<AppRule> {
    rules
        .iter()
        .map(|r| AppRule {
            name: r.name.clone(),
            exe: r.exe.iter().filter(|p| p.starts_with(MEMORY_EXE_PREFIX) == memory).cloned().collect(),
            ..AppRule::default()
        })
        .collect()
}

/// What a rule is matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// Executable path, or [`MEMORY_EXE_PREFIX`] and its name for a program run from memory.
    pub exe: Option<&'a str>,
    /// `comm`.
    pub comm: &'a str,
    /// systemd unit.
    pub unit: Option<&'a str>,
    /// User id.
    pub uid: u32,
    /// cgroup path.
    pub cgroup: Option<&'a str>,
    /// Android packages of the UID (empty off Android).
    pub packages: &'a [String],
}

/// Compiled rules: one index per field over all rules.
#[derive(Default, Clone)]
pub struct AppRules {
    names: Vec<String>,
    exe: FieldIndex,
    /// Exe patterns of programs run from memory ([`MEMORY_EXE_PREFIX`]).
    memory: FieldIndex,
    comm: HashMap<String, usize>,
    unit: FieldIndex,
    uid: HashMap<u32, usize>,
    cgroup: FieldIndex,
    package: FieldIndex,
}

impl std::fmt::Debug for AppRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}

impl AppRules {
    /// Validates and compiles the rules.
    ///
    /// # Errors
    /// More than [`MAX_RULES`] rules, a rule without a name or criterion, or a bad glob.
    pub fn compile(rules: &[AppRule]) -> Result<Self, Error> {
        if rules.len() > MAX_RULES {
            return Err(Error::TooMany { count: rules.len() });
        }
        let globs = rules
            .iter()
            .flat_map(|r| r.exe.iter().chain(&r.unit).chain(&r.cgroup).chain(&r.package))
            .filter(|p| is_glob(p))
            .count();
        if globs > MAX_GLOBS {
            return Err(Error::TooManyGlobs { count: globs });
        }
        let mut comm = HashMap::new();
        let mut uid = HashMap::new();
        for (index, r) in rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(Error::Invalid { index, reason: "`name` is empty".into() });
            }
            if r.exe.is_empty()
                && r.comm.is_empty()
                && r.unit.is_empty()
                && r.uid.is_empty()
                && r.cgroup.is_empty()
                && r.package.is_empty()
            {
                let reason = format!("`{}` has no exe, comm, unit, uid, cgroup or package", r.name);
                return Err(Error::Invalid { index, reason });
            }
            for c in &r.comm {
                // The kernel keeps 15 bytes of a process name: a longer one never matches.
                if c.len() > MAX_COMM_LEN {
                    let reason = format!(
                        "`{}`: comm `{}` is longer than the kernel's {MAX_COMM_LEN}-byte process name and can never \
                         match (give its first {MAX_COMM_LEN} bytes, or match the executable with `exe`)",
                        r.name,
                        crate::escape::terminal(c)
                    );
                    return Err(Error::Invalid { index, reason });
                }
                // Names are matched as the monitor writes them (`escape::utf8_or_hex`: a backslash
                // doubled), the way every process's `comm` is read.
                comm.entry(crate::escape::utf8_or_hex(c.as_bytes()).into_owned()).or_insert(index);
            }
            for u in &r.uid {
                uid.entry(*u).or_insert(index);
            }
            for p in &r.exe {
                if let Some(problem) = memory_pattern_problem(p) {
                    log::warn!("[[apps]] `{}`: exe `{}`: {problem}", r.name, crate::escape::terminal(p));
                }
            }
        }
        Ok(Self {
            names: rules.iter().map(|r| r.name.clone()).collect(),
            exe: FieldIndex::build("exe", &exe_patterns(rules, false), |r| &r.exe)?,
            memory: FieldIndex::build("exe", &exe_patterns(rules, true), |r| &r.exe)?,
            comm,
            unit: FieldIndex::build("unit", rules, |r| &r.unit)?,
            uid,
            cgroup: FieldIndex::build("cgroup", rules, |r| &r.cgroup)?,
            package: FieldIndex::build("package", rules, |r| &r.package)?,
        })
    }

    /// Name of the first matching rule.
    #[must_use]
    pub fn name_for(&self, s: &Subject<'_>) -> Option<&str> {
        if self.names.is_empty() {
            return None;
        }
        let first = [
            s.exe.and_then(|e| if e.starts_with(MEMORY_EXE_PREFIX) { self.memory.first(e) } else { self.exe.first(e) }),
            self.comm.get(s.comm).copied(),
            s.unit.and_then(|u| self.unit.first(u)),
            self.uid.get(&s.uid).copied(),
            s.cgroup.and_then(|c| self.cgroup.first(c)),
            s.packages.iter().filter_map(|p| self.package.first(p)).min(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        self.names.get(first).map(String::as_str)
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
        let s = |exe, comm, unit, uid, cgroup| Subject { exe, comm, unit, uid, cgroup, packages: &[] };
        assert_eq!(rules.name_for(&s(Some("/usr/lib/firefox/firefox"), "firefox", None, 1000, None)), Some("firefox"));
        assert_eq!(rules.name_for(&s(Some("/opt/other"), "Web Content", None, 1000, None)), Some("firefox"));
        assert_eq!(rules.name_for(&s(None, "nginx", Some("nginx.service"), 33, None)), Some("web server"));
        assert_eq!(rules.name_for(&s(None, "x", None, 4242, None)), Some("test user"));
        assert_eq!(rules.name_for(&s(None, "x", None, 1, Some("/system.slice/docker-abc.scope"))), Some("containers"));
        assert_eq!(rules.name_for(&s(Some("/usr/bin/curl"), "curl", None, 1000, None)), None);
    }

    #[test]
    fn the_earliest_rule_wins_across_fields_and_literal_and_glob_patterns() {
        let rules = AppRules::compile(&[
            AppRule { uid: vec![1000], ..rule("user") },
            AppRule { exe: vec!["/usr/bin/curl".into(), "/opt/*".into()], ..rule("tools") },
            AppRule { exe: vec!["/usr/bin/*".into()], comm: vec!["curl".into()], ..rule("usr") },
            AppRule { exe: vec!["/usr/bin/curl".into()], ..rule("duplicate") },
        ])
        .unwrap();
        let s = |exe, comm, uid| Subject { exe: Some(exe), comm, unit: None, uid, cgroup: None, packages: &[] };
        assert_eq!(rules.name_for(&s("/usr/bin/curl", "curl", 1000)), Some("user"), "rule 0 by uid beats exe rules");
        assert_eq!(rules.name_for(&s("/usr/bin/curl", "curl", 1)), Some("tools"), "literal exe of rule 1 beats rule 2");
        assert_eq!(rules.name_for(&s("/opt/x", "curl", 1)), Some("tools"), "glob of rule 1 beats comm of rule 2");
        assert_eq!(rules.name_for(&s("/usr/bin/wget", "wget", 1)), Some("usr"));
        assert_eq!(rules.name_for(&s("/usr/sbin/curl", "curl", 1)), Some("usr"), "comm");
        assert_eq!(rules.name_for(&s("/usr/sbin/x", "x", 1)), None);
        assert_eq!(AppRules::default().name_for(&s("/usr/bin/curl", "curl", 1000)), None);
    }

    /// `count` rules with a literal exe, a comm and a uid each; the first `globs / 2` also have
    /// an exe glob and a unit glob.
    fn many(count: usize, globs: usize) -> Vec<AppRule> {
        (0..count)
            .map(|i| AppRule {
                exe: std::iter::once(format!("/usr/bin/app{i}"))
                    .chain((i < globs / 2).then(|| format!("/opt/app{i}/bin/*")))
                    .collect(),
                comm: vec![format!("app{i}")],
                unit: (i < globs / 2).then(|| format!("app{i}-*.service")).into_iter().collect(),
                uid: vec![100_000 + u32::try_from(i).unwrap()],
                ..rule(&format!("app {i}"))
            })
            .collect()
    }

    #[test]
    fn the_most_rules_and_globs_compile_and_match_and_more_are_refused() {
        let rules = AppRules::compile(&many(MAX_RULES, MAX_GLOBS)).unwrap();
        let last_glob = MAX_GLOBS / 2 - 1;
        let exe = format!("/opt/app{last_glob}/bin/x");
        let subject = Subject { exe: Some(&exe), comm: "none", unit: None, uid: 0, cgroup: None, packages: &[] };
        assert_eq!(rules.name_for(&subject), Some(format!("app {last_glob}").as_str()));
        let exe = format!("/usr/bin/app{}", MAX_RULES - 1);
        let subject = Subject { exe: Some(&exe), comm: "none", unit: None, uid: 0, cgroup: None, packages: &[] };
        assert_eq!(rules.name_for(&subject), Some(format!("app {}", MAX_RULES - 1).as_str()));
        let subject = Subject {
            exe: None,
            comm: "none",
            unit: Some("app17-worker.service"),
            uid: 0,
            cgroup: None,
            packages: &[],
        };
        assert_eq!(rules.name_for(&subject), Some("app 17"));
        let err = AppRules::compile(&many(MAX_RULES + 1, 0)).unwrap_err();
        assert!(err.to_string().contains("at most 10000"), "{err}");
        let err = AppRules::compile(&many(MAX_GLOBS, MAX_GLOBS + 2)).unwrap_err();
        assert!(err.to_string().contains("10002 glob patterns"), "{err}");
    }

    /// Cost of compiling and matching `MONITOR_RULES` rules with two globs each:
    /// `MONITOR_RULES=5000 cargo test --release -p monitor --lib rules::tests::compile_cost -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "measurement, prints figures"]
    fn compile_cost() {
        let count = std::env::var("MONITOR_RULES").ok().and_then(|v| v.parse().ok()).unwrap_or(MAX_GLOBS / 2);
        let rules = many(count, 2 * count);
        let hwm = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_owned();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        };
        let before = hwm();
        let started = std::time::Instant::now();
        let compiled = AppRules::compile(&rules).unwrap();
        let compile = started.elapsed();
        let started = std::time::Instant::now();
        for i in 0..1000 {
            let exe = format!("/opt/app{}/bin/x", i * 7 % count);
            let s = Subject { exe: Some(&exe), comm: "none", unit: None, uid: 0, cgroup: None, packages: &[] };
            assert!(compiled.name_for(&s).is_some());
        }
        let lookups = started.elapsed();
        println!(
            "rules={count} compile={compile:?} peak_rss_growth={} MiB 1000 lookups={lookups:?}",
            (hwm() - before) / 1024
        );
    }

    #[test]
    fn package_rules_match_any_package_of_the_uid_by_glob_or_literally() {
        let rules = AppRules::compile(&[
            AppRule { uid: vec![10_500], ..rule("by uid") },
            AppRule { package: vec!["com.zhiliaoapp.*".into(), "com.ss.android.ugc.trill".into()], ..rule("tiktok") },
            AppRule { package: vec!["com.example.shared.b".into()], ..rule("shared") },
        ])
        .unwrap();
        let name = |uid, names: &[&str]| {
            let packages: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let s = Subject { exe: None, comm: "Binder:1_2", unit: None, uid, cgroup: None, packages: &packages };
            rules.name_for(&s).map(str::to_owned)
        };
        assert_eq!(name(10_123, &["com.zhiliaoapp.musically"]).as_deref(), Some("tiktok"));
        assert_eq!(name(10_124, &["com.ss.android.ugc.trill"]).as_deref(), Some("tiktok"), "literal");
        assert_eq!(name(10_125, &["com.zhiliaoapp"]), None, "the glob needs a dot and more");
        assert_eq!(name(10_126, &["com.zhiliaoappx.y"]), None);
        // A shared UID matches by any of its packages; the earliest rule still wins.
        assert_eq!(name(10_200, &["com.example.shared.a", "com.example.shared.b"]).as_deref(), Some("shared"));
        assert_eq!(name(10_500, &["com.zhiliaoapp.musically"]).as_deref(), Some("by uid"));
        assert_eq!(name(10_300, &[]), None, "no packages off Android");
        let err = AppRules::compile(&[AppRule { package: vec!["com.[".into()], ..rule("bad") }]).unwrap_err();
        assert!(err.to_string().contains("invalid pattern"), "{err}");
    }

    #[test]
    fn empty_or_invalid_rules_are_errors() {
        assert!(AppRules::compile(&[rule("nothing")]).unwrap_err().to_string().contains("no exe"));
        assert!(AppRules::compile(&[AppRule { comm: vec!["a".into()], ..rule(" ") }]).is_err());
        let err = AppRules::compile(&[AppRule { exe: vec!["[".into()], ..rule("bad") }]).unwrap_err();
        assert!(err.to_string().contains("invalid pattern"), "{err}");
        // A process name the kernel would cut: it never matches (found by an adversarial pass).
        let long = AppRule { comm: vec!["long-program-name-xyz".into()], ..rule("long") };
        let err = AppRules::compile(&[long]).unwrap_err();
        assert!(err.to_string().contains("longer than the kernel's 15-byte process name"), "{err}");
        assert!(AppRules::compile(&[AppRule { comm: vec!["long-program-na".into()], ..rule("15") }]).is_ok());
    }
}
