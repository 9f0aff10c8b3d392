//! Android app identity: UIDs to packages, from `/data/system/packages.list`.
//!
//! On Android an app is a package and runs under its own UID: `uid = user_id * 100000 + app_id`
//! (`AID_USER_OFFSET`), app IDs from 10000 (`AID_APP_START`). SDK sandbox processes run as
//! `app_id + 10000` (20000–29999) of their app; isolated processes (90000–99999) have no
//! package of their own. Packages that share a UID (`android:sharedUserId`) are all listed.
//!
//! `packages.list` has one package per line: `name appId debuggable dataPath seinfo gids …`.
//! It is written by the system, but read here as hostile input: a size cap, a line and package
//! cap, package names checked (Java package syntax), bad lines counted and skipped, never fatal.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

/// `AID_USER_OFFSET`: UIDs per Android user.
pub const USER_OFFSET: u32 = 100_000;
/// `AID_APP_START`..=`AID_APP_END`: app IDs of installed packages.
pub const APP_START: u32 = 10_000;
const APP_END: u32 = 19_999;
/// `AID_SDK_SANDBOX_PROCESS_START`..=`END`: SDK sandboxes, `app_id + 10000` of their app.
const SDK_SANDBOX_START: u32 = 20_000;
const SDK_SANDBOX_END: u32 = 29_999;
/// `AID_ISOLATED_START`..=`END`: isolated processes (no package of their own).
const ISOLATED_START: u32 = 90_000;
const ISOLATED_END: u32 = 99_999;

/// Largest `packages.list` read (a device with thousands of packages has a few hundred KiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Most packages kept.
pub const MAX_PACKAGES: usize = 100_000;
/// Longest package name accepted (Android caps names far lower).
const MAX_NAME: usize = 255;

/// What kind of UID an app ID is. Named by its serde derive ([`crate::variant`]) in the journal
/// (`apps.android_kind`) and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UidKind {
    /// An installed package's app ID.
    App,
    /// The SDK sandbox of the app `app_id - 10000`.
    SdkSandbox,
    /// An isolated process (its app is not known from the UID).
    Isolated,
    /// A system UID (below 10000) or another range.
    System,
}

/// The Android identity of a UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AndroidIdentity {
    /// The package (the first, by name, when several share the UID); `None` when unknown.
    pub package: Option<String>,
    /// Every package of the UID (shared UIDs have several).
    pub packages: Vec<String>,
    /// Android user (0 for the owner, 10+ for secondary users and work profiles).
    pub user_id: u32,
    /// App ID (`uid % 100000`).
    pub app_id: u32,
    /// The range of the app ID.
    pub kind: UidKind,
}

/// Where Android keeps the list; read at start when it exists.
pub const PACKAGES_LIST: &str = "/data/system/packages.list";

/// Reads `configured`, or [`PACKAGES_LIST`] when it exists (an Android guest); problems are
/// logged, not fatal (flows are then named by process, as elsewhere).
#[must_use]
pub fn load(configured: Option<&Path>) -> Option<Packages> {
    let path = configured.unwrap_or(Path::new(PACKAGES_LIST));
    if configured.is_none() && !path.exists() {
        return None;
    }
    match Packages::read(path) {
        Ok(p) => {
            log::info!("android packages={} bad_lines={} from {}", p.len(), p.bad_lines, path.display());
            Some(p)
        }
        Err(e) => {
            log::warn!("android packages not read from {}: {e}", path.display());
            None
        }
    }
}

/// Packages by app ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packages {
    by_app_id: BTreeMap<u32, Vec<String>>,
    /// Lines that could not be used (malformed, bad name, beyond the caps).
    pub bad_lines: u64,
}

/// Whether `name` is a Java-style package name (`[A-Za-z][A-Za-z0-9_]*` segments joined by dots).
fn valid_package(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.split('.').all(|seg| {
            let mut chars = seg.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl Packages {
    /// Parses the text of a `packages.list`.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        let mut count = 0_usize;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_ascii_whitespace();
            let (Some(name), Some(app_id)) = (fields.next(), fields.next()) else {
                out.bad_lines += 1;
                continue;
            };
            let Ok(app_id) = app_id.parse::<u32>() else {
                out.bad_lines += 1;
                continue;
            };
            if !valid_package(name) || app_id >= USER_OFFSET || count >= MAX_PACKAGES {
                out.bad_lines += 1;
                continue;
            }
            let list = out.by_app_id.entry(app_id).or_default();
            if !list.iter().any(|p| p == name) {
                list.push(name.to_owned());
                list.sort_unstable();
                count += 1;
            }
        }
        out
    }

    /// Reads and parses `path` (a regular file, at most [`MAX_FILE_BYTES`]).
    ///
    /// # Errors
    /// When the file cannot be read or is not a regular file of bounded size.
    pub fn read(path: &Path) -> Result<Self, crate::files::Error> {
        let bytes = crate::files::read_regular(path, MAX_FILE_BYTES)?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Number of packages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_app_id.values().map(Vec::len).sum()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_app_id.is_empty()
    }

    /// The Android identity of `uid`: user, app ID, range, and the packages where known (an
    /// SDK sandbox is mapped to its app's packages).
    #[must_use]
    pub fn identify(&self, uid: u32) -> AndroidIdentity {
        let (user_id, app_id) = (uid / USER_OFFSET, uid % USER_OFFSET);
        let kind = match app_id {
            APP_START..=APP_END => UidKind::App,
            SDK_SANDBOX_START..=SDK_SANDBOX_END => UidKind::SdkSandbox,
            ISOLATED_START..=ISOLATED_END => UidKind::Isolated,
            _ => UidKind::System,
        };
        let owner_app = match kind {
            UidKind::SdkSandbox => Some(app_id - (SDK_SANDBOX_START - APP_START)),
            UidKind::App | UidKind::System => Some(app_id),
            UidKind::Isolated => None,
        };
        let packages = owner_app.and_then(|a| self.by_app_id.get(&a)).cloned().unwrap_or_default();
        AndroidIdentity { package: packages.first().cloned(), packages, user_id, app_id, kind }
    }
}

/// The UID and PID of an Android process cgroup path (`…/uid_<uid>/pid_<pid>`), if it is one.
#[must_use]
pub fn uid_pid_of_cgroup(path: &str) -> Option<(u32, u32)> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let pid = parts.next()?.strip_prefix("pid_")?.parse().ok()?;
    let uid = parts.next()?.strip_prefix("uid_")?.parse().ok()?;
    Some((uid, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines in the format of a real device (Perfetto's test fixture has the first).
    const FIXTURE: &str = "\
com.package.name 10001 0 /data/user/0/com.package.name platform:privapp:targetSdkVersion=29 1065,3003 0 500 0 @system
com.zhiliaoapp.musically 10123 0 /data/user/0/com.zhiliaoapp.musically default:targetSdkVersion=34 3003 0 2023 1 com.android.vending
com.example.shared.b 10200 0 /data/user/0/com.example.shared.b default none 0 1 0 @null
com.example.shared.a 10200 0 /data/user/0/com.example.shared.a default none 0 1 0 @null
";

    #[test]
    fn uids_of_users_sandboxes_and_isolated_processes_map_as_android_does() {
        let p = Packages::parse(FIXTURE);
        assert_eq!((p.len(), p.bad_lines), (4, 0));
        let tiktok = p.identify(10_123);
        assert_eq!(tiktok.package.as_deref(), Some("com.zhiliaoapp.musically"));
        assert_eq!((tiktok.user_id, tiktok.app_id, tiktok.kind), (0, 10_123, UidKind::App));
        // Secondary user 10: uid 1010123.
        let work = p.identify(1_010_123);
        assert_eq!(
            (work.package.as_deref(), work.user_id, work.app_id),
            (Some("com.zhiliaoapp.musically"), 10, 10_123)
        );
        // SDK sandbox of the same app: app id + 10000.
        let sandbox = p.identify(20_123);
        assert_eq!((sandbox.package.as_deref(), sandbox.kind), (Some("com.zhiliaoapp.musically"), UidKind::SdkSandbox));
        // Isolated: no package from the UID alone.
        let isolated = p.identify(90_123);
        assert_eq!((isolated.package, isolated.kind), (None, UidKind::Isolated));
        // Shared UID: both packages, the first by name is the app name.
        let shared = p.identify(10_200);
        assert_eq!(shared.packages, ["com.example.shared.a", "com.example.shared.b"]);
        assert_eq!(shared.package.as_deref(), Some("com.example.shared.a"));
        // Unknown app id and a system uid.
        assert_eq!(p.identify(10_999).package, None);
        assert_eq!(p.identify(1000).kind, UidKind::System);
    }

    #[test]
    fn hostile_lines_are_counted_and_skipped() {
        let text = "\
good.pkg 10050 0 /data x none
no_app_id
bad.pkg notanumber 0
../../etc/passwd 10051 0 /x
pkg.with\u{1b}[31mescape 10052 0 /x
9starts.with.digit 10053 0 /x
too.big.app.id 4000000000 0 /x
huge.but.valid 100000 0 /x
";
        let p = Packages::parse(text);
        assert_eq!(p.len(), 1);
        assert_eq!(p.bad_lines, 7);
        assert_eq!(p.identify(10_050).package.as_deref(), Some("good.pkg"));
        let long = format!("{} 10060 0 /x\n", "a".repeat(300));
        assert_eq!(Packages::parse(&long).bad_lines, 1);
    }

    #[test]
    fn android_process_cgroups_give_uid_and_pid() {
        assert_eq!(uid_pid_of_cgroup("/uid_10123/pid_4567"), Some((10_123, 4567)));
        assert_eq!(uid_pid_of_cgroup("/sys/fs/cgroup/uid_1010123/pid_1/"), Some((1_010_123, 1)));
        assert_eq!(uid_pid_of_cgroup("/system.slice/ssh.service"), None);
        assert_eq!(uid_pid_of_cgroup("/uid_x/pid_1"), None);
        assert_eq!(uid_pid_of_cgroup("pid_1"), None);
    }
}
