use std::path::PathBuf;

/// Errors of the probe stage.
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup2 mount found in /proc/mounts (the monitor needs the cgroup v2 hierarchy)")]
    NoCgroup2,
    /// Reading /proc/mounts failed.
    #[error("failed to read /proc/mounts")]
    Mounts(#[source] procfs::ProcError),
    /// The configured cgroup does not exist or is not a cgroup v2 directory.
    #[error("cgroup `{}` is not a directory of the cgroup v2 hierarchy mounted at `{}`", path.display(), mount.display())]
    NotACgroup { path: PathBuf, mount: PathBuf },
    /// Opening the cgroup directory failed.
    #[error("failed to open cgroup `{}`", path.display())]
    OpenCgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kernel object could not be loaded (maps or BTF).
    #[error("failed to load the kernel programs")]
    Load(#[source] aya::EbpfError),
    /// The embedded kernel object is not a valid BPF ELF file (build bug).
    #[error("failed to parse the embedded kernel object (build mismatch)")]
    Parse(#[source] aya_obj::ParseError),
    /// A program is missing from the object (build mismatch).
    #[error("program `{name}` not found in the kernel object (build mismatch)")]
    ProgramNotFound { name: &'static str },
    /// A program of the object was built for another hook than the loader attaches it to.
    #[error(
        "program `{name}` in the kernel object has section {found}, not the one the loader expects (build mismatch)"
    )]
    ProgramKind { name: &'static str, found: String },
    /// A map is missing from the object (build mismatch), or was already taken.
    #[error("map `{name}` not found in the kernel object")]
    MapNotFound { name: &'static str },
    /// A load-time global is missing from the object or has another size than the loader
    /// writes (build mismatch).
    #[error("load-time global `{name}` of {size} bytes not found in the kernel object (build mismatch)")]
    GlobalNotFound {
        name: &'static str,
        size: usize,
        #[source]
        source: aya_obj::ParseError,
    },
    /// A map of the object has another type than the loader expects (build mismatch).
    #[error("map `{name}` in the kernel object is {found}, not what the loader expects (build mismatch)")]
    MapKind { name: &'static str, found: String },
    /// A program was refused by the kernel (verifier log included in the source).
    #[error("the kernel refused program `{name}`")]
    ProgramLoad {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A program could not be attached.
    #[error("failed to attach program `{name}` to `{}`", target.display())]
    Attach {
        name: &'static str,
        target: PathBuf,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map has an unexpected type or layout.
    #[error("map `{name}` has an unexpected type")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    /// Reading the kernel version failed (aya's error type is opaque, hence the box).
    #[error("failed to read the kernel version")]
    KernelVersion(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Loading failed and the kernel lacks features the monitor requires (from `monitor check`).
    #[error("this kernel lacks what the monitor needs: {} (details: `monitor check`)", missing.join("; "))]
    KernelLacks {
        missing: Vec<String>,
        #[source]
        source: Box<Error>,
    },
    /// Exclusive programs block hooks the monitor needs, and the fallback cannot stand in.
    #[error(
        "the kernel refused {refused} (an exclusive program, e.g. Android's netd, is attached to the cgroup or an \
         ancestor) and the fallback hook set cannot run: {reason}"
    )]
    NoFallback { refused: String, reason: String },
    /// The socket storages cannot be read through socket descriptors (the fallback of the
    /// counter iterator).
    #[error("cannot read socket storage by descriptor")]
    ByDescriptor(#[source] std::io::Error),
    /// The configured libc for the `getaddrinfo` probe (`names.getaddrinfo_libc`) cannot be
    /// inspected.
    #[error("names.getaddrinfo_libc `{}`", path.display())]
    Libc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configured libc for the `getaddrinfo` probe is not a regular file.
    #[error("names.getaddrinfo_libc `{}` is not a file", path.display())]
    LibcNotAFile { path: PathBuf },
    /// The ring buffer could not be registered with the async runtime.
    #[error("failed to poll the event ring buffer")]
    Poll(#[source] std::io::Error),
}
