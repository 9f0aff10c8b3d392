//! `cargo xtask install` / `uninstall`: the release binary, the hardened unit with its paths
//! substituted, the documented config and the default geolocation data.
//!
//! Without `--prefix` the files go where the unit expects them (`/usr/local/bin`,
//! `/etc/systemd/system`, `/etc/monitor`, `/usr/local/share/doc/monitor`, `/var/lib/monitor/geo`);
//! with `--prefix P` everything goes under `P` and the unit and config name those paths.
//! `uninstall` removes the binary, the unit and the documentation; the config, the geolocation
//! data and the journal (`/var/lib/monitor`) are left alone (they are the lab's).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use monitor_common::geo::{ASN_DB_FILE, COUNTRY_DB_FILE, DEFAULT_DIR as DEFAULT_GEO_DIR};

use crate::exec::{cargo, exec, target_dir, workspace_root};

/// Paths in the shipped unit that `install` substitutes.
const UNIT_BINARY: &str = "/usr/local/bin/monitor";
const UNIT_CONFIG: &str = "/etc/monitor/monitor.toml";
const UNIT_DOC: &str = "/usr/local/share/doc/monitor";

/// `cargo xtask install` options.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Install under this directory instead of the system locations. Example: --prefix /opt/monitor
    #[arg(long)]
    pub prefix: Option<PathBuf>,
    /// Install this binary instead of building one (`cargo build --release -p monitor`).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Do not install the default geolocation data.
    #[arg(long)]
    pub no_geo: bool,
}

/// `cargo xtask uninstall` options.
#[derive(clap::Args, Default)]
pub struct UninstallArgs {
    /// The prefix given to `install`. Example: --prefix /opt/monitor
    #[arg(long)]
    pub prefix: Option<PathBuf>,
}

/// Where each installed file goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    pub binary: PathBuf,
    pub unit: PathBuf,
    pub config: PathBuf,
    pub doc: PathBuf,
    pub geo: PathBuf,
}

impl Layout {
    pub fn new(prefix: Option<&Path>) -> Self {
        match prefix {
            None => Self {
                binary: UNIT_BINARY.into(),
                unit: "/etc/systemd/system/monitor.service".into(),
                config: UNIT_CONFIG.into(),
                doc: UNIT_DOC.into(),
                geo: DEFAULT_GEO_DIR.into(),
            },
            Some(p) => Self {
                binary: p.join("bin/monitor"),
                unit: p.join("lib/systemd/system/monitor.service"),
                config: p.join("etc/monitor/monitor.toml"),
                doc: p.join("share/doc/monitor"),
                // The default directory, re-rooted under the prefix.
                geo: p.join(DEFAULT_GEO_DIR.trim_start_matches('/')),
            },
        }
    }
}

fn say(msg: &str) {
    eprintln!("xtask install: {msg}");
}

/// Writes `bytes` to `path` (parents created) through a temporary file and a rename, with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    fs::write(tmp.path(), bytes).with_context(|| format!("cannot write {}", tmp.path().display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(path).with_context(|| format!("cannot install {}", path.display()))?;
    say(&format!("installed {}", path.display()));
    Ok(())
}

/// The shipped unit with the layout's paths.
pub fn unit_text(shipped: &str, layout: &Layout) -> anyhow::Result<String> {
    for needle in [UNIT_BINARY, UNIT_CONFIG, UNIT_DOC] {
        if !shipped.contains(needle) {
            bail!("config/monitor.service no longer names {needle}; update xtask/src/install.rs");
        }
    }
    Ok(shipped
        .replace(UNIT_BINARY, &layout.binary.display().to_string())
        .replace(UNIT_CONFIG, &layout.config.display().to_string())
        .replace(UNIT_DOC, &layout.doc.display().to_string()))
}

/// The documented config, naming the layout's geolocation files when they are not the defaults.
pub fn config_text(shipped: &str, layout: &Layout) -> String {
    if layout.geo == Path::new(DEFAULT_GEO_DIR) {
        return shipped.to_owned();
    }
    let mut text = shipped.to_owned();
    for (key, file) in [("country_db", COUNTRY_DB_FILE), ("asn_db", ASN_DB_FILE)] {
        let commented = format!("# {key} = \"{DEFAULT_GEO_DIR}/{file}\"");
        let set = format!("{key} = \"{}\"", layout.geo.join(file).display());
        text = text.replace(&commented, &set);
    }
    text
}

/// Installs into `layout` from the workspace, with `binary` as the monitor.
pub fn install_files(layout: &Layout, binary: &Path) -> anyhow::Result<()> {
    let root = workspace_root();
    let read = |p: &str| fs::read_to_string(root.join(p)).with_context(|| format!("cannot read {p}"));
    let bin = fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    write_file(&layout.binary, &bin, 0o755)?;
    write_file(&layout.unit, unit_text(&read("config/monitor.service")?, layout)?.as_bytes(), 0o644)?;
    if layout.config.exists() {
        say(&format!("kept the existing {}", layout.config.display()));
    } else {
        write_file(&layout.config, config_text(&read("config/monitor.toml")?, layout).as_bytes(), 0o644)?;
    }
    for doc in ["README.md", "config/prometheus-rules.yml", "config/grafana-dashboard.json"] {
        let name = Path::new(doc).file_name().context("documentation file name")?;
        write_file(&layout.doc.join(name), read(doc)?.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Removes what [`install_files`] wrote except the config.
pub fn uninstall_files(layout: &Layout) -> anyhow::Result<()> {
    for path in [&layout.binary, &layout.unit] {
        match fs::remove_file(path) {
            Ok(()) => say(&format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    if layout.doc.exists() {
        fs::remove_dir_all(&layout.doc).with_context(|| format!("cannot remove {}", layout.doc.display()))?;
        say(&format!("removed {}", layout.doc.display()));
    }
    say(&format!("kept {} and {} (and the journal)", layout.config.display(), layout.geo.display()));
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let layout = Layout::new(args.prefix.as_deref());
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => {
            exec(cargo().args(["build", "--release", "-p", "monitor"]))?;
            target_dir().join("release/monitor")
        }
    };
    install_files(&layout, &binary)?;
    if !args.no_geo {
        crate::geo::install_into(&layout.geo)?;
    }
    say("done; then: systemctl daemon-reload && systemctl enable --now monitor");
    if args.prefix.is_some() {
        say(&format!(
            "link or copy {} to /etc/systemd/system/ (a prefix under /home is hidden by the unit's ProtectHome=)",
            layout.unit.display()
        ));
    }
    Ok(())
}

pub fn uninstall(args: &UninstallArgs) -> anyhow::Result<()> {
    uninstall_files(&Layout::new(args.prefix.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_into_a_prefix_substitutes_paths_and_uninstall_keeps_the_config() {
        let prefix = tempfile::tempdir().unwrap();
        let layout = Layout::new(Some(prefix.path()));
        let fake = prefix.path().join("built-monitor");
        fs::write(&fake, b"\x7fELF fake").unwrap();
        install_files(&layout, &fake).unwrap();

        assert_eq!(fs::read(&layout.binary).unwrap(), b"\x7fELF fake");
        assert_eq!(fs::metadata(&layout.binary).unwrap().permissions().mode() & 0o777, 0o755);
        let unit = fs::read_to_string(&layout.unit).unwrap();
        let exec_start = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert_eq!(
            exec_start,
            format!("ExecStart={} --config {} run --output none", layout.binary.display(), layout.config.display())
        );
        assert!(!unit.contains("/usr/local/bin"), "{unit}");
        let config = fs::read_to_string(&layout.config).unwrap();
        let geo = layout.geo.join(COUNTRY_DB_FILE);
        assert!(config.contains(&format!("\ncountry_db = \"{}\"", geo.display())), "{config}");
        assert!(layout.doc.join("README.md").exists() && layout.doc.join("prometheus-rules.yml").exists());

        // A second install keeps an edited config.
        fs::write(&layout.config, "# edited\n").unwrap();
        install_files(&layout, &fake).unwrap();
        assert_eq!(fs::read_to_string(&layout.config).unwrap(), "# edited\n");

        uninstall_files(&layout).unwrap();
        assert!(!layout.binary.exists() && !layout.unit.exists() && !layout.doc.exists());
        assert!(layout.config.exists(), "the config is the lab's");
        uninstall_files(&layout).unwrap();
    }

    #[test]
    fn default_layout_is_where_the_shipped_unit_looks() {
        let layout = Layout::new(None);
        let shipped = fs::read_to_string(workspace_root().join("config/monitor.service")).unwrap();
        assert_eq!(unit_text(&shipped, &layout).unwrap(), shipped);
        assert_eq!(layout.geo, Path::new(DEFAULT_GEO_DIR));
    }
}
