//! [`Enricher`]: the opened databases, the answer cache and the counters behind `lookup`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use maxminddb::MaxMindDbError;

use super::{
    ASN_DB_FILE, COUNTRY_DB_FILE, DEFAULT_GEO_DIR, DbInfo, Destination, EnrichStats, Error, GeoConfig,
    REGISTRY_DB_FILE, SETUP_COMMAND, Scope,
    cache::{AnswerCache, ListCache, ListKey},
    consensus::{CountryAnswer, PRIMARY_LABEL, REGISTRY_LABEL, verdict},
    db::{Database, Role},
    scope::classify,
    tree::{Walk, walk_together},
};

const SECS_PER_DAY: u64 = 86_400;

/// Looks up the country and network owner of remote addresses.
///
/// Used from one task (`lookup` takes `&mut self` for the cache and counters). Not found is
/// a normal answer with `None` fields.
#[derive(Debug)]
pub struct Enricher {
    /// Configuration the databases were opened from (used again by [`Enricher::reload`]).
    config: GeoConfig,
    /// Directory of the default files ([`DEFAULT_GEO_DIR`] outside tests).
    default_dir: PathBuf,
    /// Country database, `None` when the default file is absent.
    country: Option<Database>,
    /// ASN database, `None` when the default file is absent.
    asn: Option<Database>,
    /// Further country databases compared with `country` (registry, then `extra_country`), with
    /// their labels.
    others: Vec<(Arc<str>, Database)>,
    /// [`PRIMARY_LABEL`], shared by every answer list.
    primary_label: Arc<str>,
    /// Missing defaults and stale data, one line each.
    warnings: Vec<String>,
    /// Answers for public addresses.
    cache: AnswerCache,
    /// Country answer lists by the records they came from.
    lists: ListCache,
    /// Counters since `open`.
    stats: EnrichStats,
    /// Whether a lookup failure was already logged at `warn` (later ones are only counted).
    failure_logged: bool,
}

/// Databases and warnings of one load.
struct Loaded {
    country: Option<Database>,
    asn: Option<Database>,
    others: Vec<(Arc<str>, Database)>,
    warnings: Vec<String>,
}

impl Enricher {
    /// Opens the databases `config` names, or the defaults in [`DEFAULT_GEO_DIR`].
    ///
    /// A missing default database is not an error: its fields stay `None` and
    /// [`warnings`](Self::warnings) says so and how to install it. Data older than
    /// `max_age_days` also gives a warning. Nothing is logged here: the caller logs
    /// the warnings once.
    ///
    /// # Errors
    /// A configured file that is missing, unreadable, not an MMDB, IPv4-only or of the wrong
    /// kind; a default file that exists but is unusable. The error names the path.
    pub fn open(config: &GeoConfig) -> Result<Self, Error> {
        Self::open_in(config, Path::new(DEFAULT_GEO_DIR))
    }

    /// [`open`](Self::open) with the default files looked for in `default_dir` instead of
    /// [`DEFAULT_GEO_DIR`] (tests; installs elsewhere).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_in(config: &GeoConfig, default_dir: &Path) -> Result<Self, Error> {
        let Loaded { country, asn, others, warnings } = load(config, default_dir, now_secs())?;
        Ok(Self {
            config: config.clone(),
            default_dir: default_dir.to_path_buf(),
            country,
            asn,
            others,
            primary_label: Arc::from(PRIMARY_LABEL),
            warnings,
            cache: AnswerCache::new(config.cache_entries),
            lists: ListCache::default(),
            stats: EnrichStats::default(),
            failure_logged: false,
        })
    }

    /// Re-opens the databases from the same configuration (on SIGHUP, after new files were
    /// renamed into place). On success the cache is emptied and the warnings replaced; on
    /// failure nothing changes and the old databases keep answering.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn reload(&mut self) -> Result<(), Error> {
        let Loaded { country, asn, others, warnings } = load(&self.config, &self.default_dir, now_secs())?;
        self.country = country;
        self.asn = asn;
        self.others = others;
        self.warnings = warnings;
        self.cache.invalidate();
        self.lists.invalidate();
        Ok(())
    }

    /// Warnings of the last (re)load: missing default databases (with the command that
    /// installs them) and data older than `max_age_days`.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &GeoConfig {
        &self.config
    }

    /// Country and network owner of `ip`. Never fails: unknown fields are `None`, and a
    /// database error on one lookup is counted ([`EnrichStats::lookup_errors`]).
    pub fn lookup(&mut self, ip: IpAddr) -> Destination {
        let ip = looked_up_as(ip);
        let scope = classify(ip);
        let answer = if scope != Scope::Public {
            not_looked_up(scope)
        } else if let Some(hit) = self.cache.get(&ip) {
            self.stats.cache_hits += 1;
            hit.clone()
        } else {
            let answer = self.query(ip);
            if self.cache.is_enabled() {
                self.cache.insert(ip, answer.clone());
            }
            answer
        };
        self.stats.record(&answer);
        answer
    }

    /// Looks a public address up in every database.
    fn query(&mut self, ip: IpAddr) -> Destination {
        let mut answer = not_looked_up(Scope::Public);
        let [country_walk, asn_walk, other_walks @ ..] = walk_together(
            [
                self.country.as_ref().and_then(Database::tree),
                self.asn.as_ref().and_then(Database::tree),
                self.others.first().and_then(|(_, db)| db.tree()),
                self.others.get(1).and_then(|(_, db)| db.tree()),
            ],
            ip,
        );
        let errors_before = self.stats.lookup_errors;
        if let Some(db) = &mut self.country {
            answer.country_db = Some(db.db_ref.clone());
            match db.country(ip, country_walk) {
                Ok(country) => answer.country = country,
                Err(e) => failed(&mut self.stats, &mut self.failure_logged, db, ip, &e),
            }
        }
        if !self.others.is_empty() {
            // Every country database walked to a known place: the list depends on nothing else.
            let walked = |w: &Walk| *w != Walk::Unknown;
            let key: Option<ListKey> = (self.country.is_none() || walked(&country_walk))
                .then_some(other_walks)
                .filter(|w| self.others.len() <= w.len() && w.iter().take(self.others.len()).all(walked))
                .map(|[a, b]| [country_walk, a, b, Walk::Unknown]);
            if let Some((list, consensus)) = key.as_ref().and_then(|k| self.lists.get(k)) {
                answer.answers = list.clone();
                answer.consensus = *consensus;
            } else {
                self.answer_list(ip, &mut answer, &other_walks);
                if let Some(key) = key
                    && self.stats.lookup_errors == errors_before
                {
                    self.lists.insert(key, answer.answers.clone(), answer.consensus);
                }
            }
        }
        if let Some(db) = &mut self.asn {
            answer.asn_db = Some(db.db_ref.clone());
            match db.asn(ip, asn_walk) {
                Ok(Some(found)) => (answer.asn, answer.as_org) = (Some(found.asn), found.org),
                Ok(None) => {}
                Err(e) => failed(&mut self.stats, &mut self.failure_logged, db, ip, &e),
            }
        }
        answer
    }

    /// Asks every further country database and fills `answer.answers` (the primary's answer,
    /// already in `answer.country`, first) and `answer.consensus`.
    fn answer_list(&mut self, ip: IpAddr, answer: &mut Destination, walks: &[Walk]) {
        let primary = self.country.as_ref().map(|db| CountryAnswer {
            label: self.primary_label.clone(),
            db: db.db_ref.clone(),
            country: answer.country.clone(),
        });
        let (stats, logged) = (&mut self.stats, &mut self.failure_logged);
        let others = self.others.iter_mut().enumerate().map(|(i, (label, db))| {
            let walk = walks.get(i).copied().unwrap_or(Walk::Unknown);
            let country = db.country(ip, walk).unwrap_or_else(|e| {
                failed(stats, logged, db, ip, &e);
                None
            });
            CountryAnswer { label: label.clone(), db: db.db_ref.clone(), country }
        });
        // An exact-size chain: one allocation for the shared list.
        let answers: Arc<[CountryAnswer]> = primary.into_iter().chain(others).collect();
        answer.consensus = verdict(&answers);
        answer.answers = answers;
    }

    /// Counters since [`open`](Self::open).
    #[must_use]
    pub fn stats(&self) -> EnrichStats {
        EnrichStats { cache_len: self.cache.len(), cache_clears: self.cache.clears(), ..self.stats.clone() }
    }

    /// The loaded databases (absent defaults are not listed; see [`warnings`](Self::warnings)),
    /// with their age now.
    #[must_use]
    pub fn databases(&self) -> Vec<DbInfo> {
        let now = now_secs();
        let mut list: Vec<DbInfo> = [&self.country, &self.asn].into_iter().flatten().map(|db| info(db, now)).collect();
        list.extend(
            self.others
                .iter()
                .map(|(label, db)| DbInfo { role: format!("{}:{label}", Role::Country), ..info(db, now) }),
        );
        list
    }

    /// Labels of the country databases compared for consensus, the primary first (empty when
    /// fewer than two are loaded: no consensus).
    #[must_use]
    pub fn country_labels(&self) -> Vec<Arc<str>> {
        if self.others.is_empty() {
            return Vec::new();
        }
        let primary = self.country.as_ref().map(|_| Arc::from(PRIMARY_LABEL));
        primary.into_iter().chain(self.others.iter().map(|(l, _)| l.clone())).collect()
    }
}

/// Default file of `role`: [`DEFAULT_GEO_DIR`]/[`COUNTRY_DB_FILE`] or [`ASN_DB_FILE`].
#[must_use]
pub fn default_path(role: Role) -> PathBuf {
    file_in(Path::new(DEFAULT_GEO_DIR), role)
}

fn file_in(dir: &Path, role: Role) -> PathBuf {
    dir.join(match role {
        Role::Country => COUNTRY_DB_FILE,
        Role::Asn => ASN_DB_FILE,
    })
}

fn load(config: &GeoConfig, default_dir: &Path, now: u64) -> Result<Loaded, Error> {
    let mut warnings = Vec::new();
    let country = open_role(Role::Country, config.country_db.as_deref(), default_dir, &mut warnings)?;
    let asn = open_role(Role::Asn, config.asn_db.as_deref(), default_dir, &mut warnings)?;
    let others = open_others(config, default_dir, &mut warnings)?;
    for db in [&country, &asn].into_iter().flatten().chain(others.iter().map(|(_, db)| db)) {
        let age = info(db, now).age_days;
        if config.max_age_days > 0 && age > config.max_age_days {
            warnings.push(format!(
                "{} database `{}` ({}) is {age} days old (built {}), more than max_age_days = {}: \
                 install fresher data or raise [geo] max_age_days",
                db.role,
                db.path.display(),
                db.db_ref.database_type,
                build_date(db.db_ref.build_epoch),
                config.max_age_days,
            ));
        }
    }
    Ok(Loaded { country, asn, others, warnings })
}

/// Opens the registry country database (configured: must work; default: may be absent) and
/// every `extra_country` (must work), after checking their labels.
fn open_others(
    config: &GeoConfig,
    default_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(Arc<str>, Database)>, Error> {
    config.check_labels()?;
    let mut others = Vec::new();
    if let Some(path) = &config.registry_db {
        others.push((Arc::from(REGISTRY_LABEL), Database::open(Role::Country, path)?));
    } else {
        let path = default_dir.join(REGISTRY_DB_FILE);
        match Database::open(Role::Country, &path) {
            Ok(db) => others.push((Arc::from(REGISTRY_LABEL), db)),
            Err(Error::Open { source: MaxMindDbError::Io(e), .. }) if e.kind() == std::io::ErrorKind::NotFound => {
                warnings.push(format!(
                    "registry database `{}` not found, country answers are not cross-checked unless \
                     [geo] extra_country names a database: install the default data with `{SETUP_COMMAND}` \
                     (as root), or set [geo] registry_db",
                    path.display()
                ));
            }
            Err(e) => return Err(e),
        }
    }
    for extra in &config.extra_country {
        others.push((Arc::from(extra.label.as_str()), Database::open(Role::Country, &extra.path)?));
    }
    Ok(others)
}

/// Opens the configured file (must work) or the default one (may be absent).
fn open_role(
    role: Role,
    configured: Option<&Path>,
    default_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<Database>, Error> {
    if let Some(path) = configured {
        return Database::open(role, path).map(Some);
    }
    let path = file_in(default_dir, role);
    match Database::open(role, &path) {
        Ok(db) => Ok(Some(db)),
        Err(Error::Open { source: MaxMindDbError::Io(e), .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            let what = match role {
                Role::Country => "countries",
                Role::Asn => "network owners (ASN)",
            };
            warnings.push(format!(
                "{role} database `{}` not found, {what} are unknown: install the default data with \
                 `{SETUP_COMMAND}` (as root), or set [geo] {role}_db",
                path.display()
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn info(db: &Database, now: u64) -> DbInfo {
    DbInfo {
        role: db.role.to_string(),
        path: db.path.clone(),
        db: db.db_ref.clone(),
        age_days: now.saturating_sub(db.db_ref.build_epoch) / SECS_PER_DAY,
    }
}

fn not_looked_up(scope: Scope) -> Destination {
    Destination::unlooked(scope)
}

fn failed(stats: &mut EnrichStats, logged: &mut bool, db: &Database, ip: IpAddr, e: &MaxMindDbError) {
    stats.lookup_errors += 1;
    if *logged {
        log::debug!("lookup failed role={} path={} ip={ip}: {e}", db.role, db.path.display());
    } else {
        *logged = true;
        log::warn!(
            "lookup failed role={} path={} ip={ip}: {e} (further failures are counted in lookup_errors)",
            db.role,
            db.path.display()
        );
    }
}

fn build_date(epoch: u64) -> String {
    i64::try_from(epoch)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("epoch {epoch}"), |t| t.strftime("%Y-%m-%d").to_string())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The address a lookup answers for: an IPv4-mapped address's IPv4 address, and the IPv4 address
/// that a NAT64 address of the well-known prefix `64:ff9b::/96` carries in its last 32 bits
/// (RFC 6052: an IPv6-only network reaches IPv4 servers through it; the databases answer for the
/// IPv4 server, which is where the bytes go). The local-use prefix `64:ff9b:1::/48` (RFC 8215)
/// places the IPv4 address where its operator chose and stays `reserved`. A well-known-prefix
/// address carrying a non-global IPv4 address (which RFC 6052 forbids translators to reach) is
/// not taken for that address: a private or loopback class would exempt its bytes from claims;
/// it stays a public IPv6 address that no database covers (`unknown`).
fn looked_up_as(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let [.., a, b, c, d] = v6.octets();
            let v4 = IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
            if classify(v4) == Scope::Public { v4 } else { IpAddr::V6(v6) }
        }
        ip => ip,
    }
}
