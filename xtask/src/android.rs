//! `cargo xtask android deploy|pull`: the monitor inside an Android emulator or rooted device,
//! through `adb` (Debian package `adb`; `ADB` overrides the program).
//!
//! `deploy` needs a userdebug/eng image (`adb root`; "Google APIs" emulator images, not "Google
//! Play" ones), pushes a static monitor binary (`--binary`, e.g. from `cargo xtask dist`), the
//! config and optional geolocation data to `--dir`, switches SELinux to permissive only with
//! `--permissive` (BPF loading outside bpfloader is denied by policy otherwise), and starts
//! `monitor run` in the background with its journal in `--dir`. `pull` copies the journal (and its
//! WAL) back, for `monitor report --journal`. The command lines are planned first (pure, tested)
//! and then run one by one; the first failure stops.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// `cargo xtask android`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: AndroidCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AndroidCommand {
    /// Push the monitor, its config and data to the device and start it.
    Deploy(Deploy),
    /// Copy the device's journal back.
    Pull(Pull),
}

/// `deploy` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Deploy {
    /// Device serial (`adb devices`). Example: --serial emulator-5554
    #[arg(long)]
    serial: String,
    /// Static monitor binary for the device's architecture. Example: --binary target/dist/x86_64/monitor
    #[arg(long)]
    binary: PathBuf,
    /// Config file pushed as `<dir>/monitor.toml`. Example: --config config/monitor.toml
    #[arg(long, default_value = "config/monitor.toml")]
    config: PathBuf,
    /// Geolocation data directory pushed as `<dir>/geo` (optional). Example: --data /usr/share/monitor/geo
    #[arg(long)]
    data: Option<PathBuf>,
    /// Directory on the device. Example: --dir /data/local/tmp/monitor
    #[arg(long, default_value = DEVICE_DIR)]
    dir: String,
    /// Run `setenforce 0` first (test images only: SELinux denies BPF loading outside bpfloader).
    #[arg(long)]
    permissive: bool,
}

/// `pull` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Pull {
    /// Device serial. Example: --serial emulator-5554
    #[arg(long)]
    serial: String,
    /// Directory on the device. Example: --dir /data/local/tmp/monitor
    #[arg(long, default_value = DEVICE_DIR)]
    dir: String,
    /// Local directory for the journal. Example: --out target/android
    #[arg(long, default_value = "target/android")]
    out: PathBuf,
}

const DEVICE_DIR: &str = "/data/local/tmp/monitor";

/// One adb invocation: its arguments, and whether a failure is tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    args: Vec<OsString>,
    optional: bool,
}

fn step(args: &[&dyn AsRef<std::ffi::OsStr>], optional: bool) -> Step {
    Step { args: args.iter().map(|a| a.as_ref().to_os_string()).collect(), optional }
}

/// Serials and device paths go into command lines (and `sh -c` on the device): only plain
/// characters are accepted.
fn check_plain(what: &str, value: &str, extra: &[char]) -> anyhow::Result<()> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c) || extra.contains(&c))
    {
        bail!("{what} `{value}` has characters other than letters, digits and . _ - :");
    }
    Ok(())
}

fn plan_deploy(d: &Deploy) -> anyhow::Result<Vec<Step>> {
    check_plain("serial", &d.serial, &[])?;
    check_plain("device directory", &d.dir, &['/'])?;
    if !d.dir.starts_with('/') {
        bail!("device directory `{}` must be absolute", d.dir);
    }
    let s = d.serial.as_str();
    let dir = d.dir.as_str();
    let bin = format!("{dir}/monitor");
    let conf = format!("{dir}/monitor.toml");
    let mut steps = vec![
        step(&[&"-s", &s, &"root"], false),
        step(&[&"-s", &s, &"wait-for-device"], false),
        step(&[&"-s", &s, &"shell", &"mkdir", &"-p", &dir], false),
        step(&[&"-s", &s, &"push", &d.binary, &bin], false),
        step(&[&"-s", &s, &"shell", &"chmod", &"755", &bin], false),
        step(&[&"-s", &s, &"push", &d.config, &conf], false),
    ];
    if let Some(data) = &d.data {
        steps.push(step(&[&"-s", &s, &"push", data, &format!("{dir}/geo")], false));
    }
    if d.permissive {
        steps.push(step(&[&"-s", &s, &"shell", &"setenforce", &"0"], false));
    }
    let start = format!(
        "cd {dir} && nohup ./monitor run --config {conf} --journal {dir}/journal.db > {dir}/monitor.log 2>&1 &"
    );
    steps.push(step(&[&"-s", &s, &"shell", &start], false));
    Ok(steps)
}

fn plan_pull(p: &Pull) -> anyhow::Result<Vec<Step>> {
    check_plain("serial", &p.serial, &[])?;
    check_plain("device directory", &p.dir, &['/'])?;
    let s = p.serial.as_str();
    let mut steps = Vec::new();
    for (name, optional) in [("journal.db", false), ("journal.db-wal", true), ("journal.db-shm", true)] {
        let from = format!("{}/{name}", p.dir);
        steps.push(step(&[&"-s", &s, &"pull", &from, &p.out.join(name)], optional));
    }
    Ok(steps)
}

fn run_steps(adb: &Path, steps: &[Step]) -> anyhow::Result<()> {
    for st in steps {
        eprintln!(
            "xtask: {} {}",
            adb.display(),
            st.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        let status = Command::new(adb)
            .args(&st.args)
            .status()
            .with_context(|| format!("cannot run {} (install the Debian package `adb`)", adb.display()))?;
        if !status.success() && !st.optional {
            bail!("{} failed ({status})", adb.display());
        }
    }
    Ok(())
}

fn adb() -> PathBuf {
    std::env::var_os("ADB").map_or_else(|| PathBuf::from("adb"), PathBuf::from)
}

/// Runs `cargo xtask android …`.
///
/// # Errors
/// Bad arguments, or the first adb command that fails.
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        AndroidCommand::Deploy(d) => run_steps(&adb(), &plan_deploy(d)?),
        AndroidCommand::Pull(p) => {
            std::fs::create_dir_all(&p.out).with_context(|| format!("cannot create {}", p.out.display()))?;
            run_steps(&adb(), &plan_pull(p)?)?;
            eprintln!(
                "xtask: journal in {}; read it with `monitor report --journal {}`",
                p.out.display(),
                p.out.join("journal.db").display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn deploy() -> Deploy {
        Deploy {
            serial: "emulator-5554".into(),
            binary: "target/dist/x86_64/monitor".into(),
            config: "config/monitor.toml".into(),
            data: None,
            dir: DEVICE_DIR.into(),
            permissive: false,
        }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")).collect()
    }

    #[test]
    fn deploy_plans_root_push_and_start_and_setenforce_only_when_asked() {
        let plan = lines(&plan_deploy(&deploy()).unwrap());
        assert_eq!(plan[0], "-s emulator-5554 root");
        assert!(
            plan.contains(&"-s emulator-5554 push target/dist/x86_64/monitor /data/local/tmp/monitor/monitor".into())
        );
        assert!(
            plan.contains(&"-s emulator-5554 push config/monitor.toml /data/local/tmp/monitor/monitor.toml".into())
        );
        assert!(!plan.iter().any(|l| l.contains("setenforce")), "{plan:#?}");
        assert!(plan.last().unwrap().contains("./monitor run --config /data/local/tmp/monitor/monitor.toml"));
        let plan = lines(&plan_deploy(&Deploy { permissive: true, data: Some("geo".into()), ..deploy() }).unwrap());
        assert!(plan.contains(&"-s emulator-5554 shell setenforce 0".into()));
        assert!(plan.contains(&"-s emulator-5554 push geo /data/local/tmp/monitor/geo".into()));
    }

    #[test]
    fn hostile_serials_and_directories_are_refused() {
        for serial in ["", "emu; rm -rf /", "a b", "$(id)"] {
            assert!(plan_deploy(&Deploy { serial: serial.into(), ..deploy() }).is_err(), "{serial}");
        }
        assert!(plan_deploy(&Deploy { dir: "relative".into(), ..deploy() }).is_err());
        assert!(plan_deploy(&Deploy { dir: "/data/x;reboot".into(), ..deploy() }).is_err());
    }

    #[test]
    fn a_fake_adb_receives_exactly_the_planned_command_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("calls");
        let fake = tmp.path().join("adb");
        // Logs its arguments; fails for the optional WAL pulls, like a journal without a WAL.
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\ncase \"$*\" in *-wal*|*-shm*) exit 1;; esac\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pull = Pull { serial: "emulator-5554".into(), dir: DEVICE_DIR.into(), out: tmp.path().join("out") };
        run_steps(&fake, &plan_pull(&pull).unwrap()).unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        let out = tmp.path().join("out");
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            [
                format!(
                    "-s emulator-5554 pull /data/local/tmp/monitor/journal.db {}",
                    out.join("journal.db").display()
                ),
                format!(
                    "-s emulator-5554 pull /data/local/tmp/monitor/journal.db-wal {}",
                    out.join("journal.db-wal").display()
                ),
                format!(
                    "-s emulator-5554 pull /data/local/tmp/monitor/journal.db-shm {}",
                    out.join("journal.db-shm").display()
                ),
            ]
        );
        // A required step that fails stops the run.
        std::fs::write(&fake, format!("#!/bin/sh\necho \"$*\" >> {}\nexit 3\n", log.display())).unwrap();
        assert!(run_steps(&fake, &plan_deploy(&deploy()).unwrap()).is_err());
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().last(), Some("-s emulator-5554 root"), "stopped after the first failure");
    }
}
