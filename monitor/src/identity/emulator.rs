//! Android emulators on a host: every guest flow is re-originated by the emulator process
//! (`qemu-system-*`, or `emulator` itself), whose command line carries `-avd NAME` (or
//! `@NAME`) and, when set, `-port N` (serial `emulator-N`). Their flows are charged to
//! `android-emulator:NAME` (`android-emulator:NAME/emulator-N` with a port), not to a generic qemu.
//!
//! The command line is another process's data: the AVD name is kept only in the characters AVD
//! names may have (`[A-Za-z0-9._-]`, others become `_`) and at most 64 of them.

/// Longest AVD name kept.
const MAX_AVD: usize = 64;

fn is_emulator(argv0: &[u8]) -> bool {
    let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or(argv0);
    base.starts_with(b"qemu-system-") || base == b"emulator" || base.starts_with(b"emulator64")
}

fn clean(name: &[u8]) -> Option<String> {
    let s: String = name
        .iter()
        .take(MAX_AVD)
        .map(|&b| if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' { char::from(b) } else { '_' })
        .collect();
    (!s.is_empty()).then_some(s)
}

/// The app name of an Android emulator process, from its arguments (`argv[0]` first).
#[must_use]
pub fn emulator_app<'a>(argv: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    let args: Vec<&[u8]> = argv.into_iter().take(4096).collect();
    if !is_emulator(args.first()?) {
        return None;
    }
    let mut avd = None;
    let mut port = None;
    for (i, a) in args.iter().enumerate().skip(1) {
        let next = args.get(i + 1).copied();
        match *a {
            b"-avd" | b"--avd" => avd = next.and_then(clean),
            b"-port" | b"--port" => {
                port = next.and_then(|p| std::str::from_utf8(p).ok()).and_then(|p| p.parse::<u16>().ok());
            }
            _ if a.starts_with(b"@") && avd.is_none() => avd = clean(&a[1..]),
            _ => {}
        }
    }
    let avd = avd?;
    Some(match port {
        Some(p) => format!("android-emulator:{avd}/emulator-{p}"),
        None => format!("android-emulator:{avd}"),
    })
}

#[cfg(test)]
mod tests {
    use super::emulator_app;

    fn app(line: &str) -> Option<String> {
        emulator_app(line.split(' ').map(str::as_bytes))
    }

    #[test]
    fn emulator_processes_are_named_by_avd_and_port() {
        assert_eq!(
            app(
                "/opt/android-sdk/emulator/qemu/linux-x86_64/qemu-system-x86_64 -netdelay none -avd Pixel_8 -port 5556"
            ),
            Some("android-emulator:Pixel_8/emulator-5556".into())
        );
        assert_eq!(app("qemu-system-aarch64 -avd Pixel_8_API_35"), Some("android-emulator:Pixel_8_API_35".into()));
        assert_eq!(
            app("/home/u/Android/Sdk/emulator/emulator @Tablet -no-snapshot"),
            Some("android-emulator:Tablet".into())
        );
        // A plain qemu VM (no AVD) and other programs with -avd are not emulators.
        assert_eq!(app("qemu-system-x86_64 -m 2048 -hda disk.img"), None);
        assert_eq!(app("/usr/bin/python3 -avd Pixel_8"), None);
        // Hostile names are cleaned and capped; a bad port is ignored.
        assert_eq!(
            app("qemu-system-x86_64 -avd ../\u{1b}[31mx -port 99999"),
            Some("android-emulator:..___31mx".into())
        );
        let long = format!("qemu-system-x86_64 -avd {}", "a".repeat(200));
        assert_eq!(app(&long).map(|n| n.len()), Some("android-emulator:".len() + 64));
        assert_eq!(app("qemu-system-x86_64 -avd"), None);
    }
}
