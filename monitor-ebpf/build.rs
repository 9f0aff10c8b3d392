use which::which;

/// Building the kernel object needs `bpf-linker`; `cargo xtask setup` installs it.
fn main() {
    let bpf_linker = which("bpf-linker")
        .unwrap_or_else(|err| panic!("bpf-linker not found on PATH ({err}); run `cargo xtask setup` to install it"));
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap_or_default());
}
