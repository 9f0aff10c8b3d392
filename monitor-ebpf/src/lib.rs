#![no_std]
// This crate is a build-dependency of `monitor` so that cargo rebuilds the kernel object when it
// changes; the programs themselves are in the `monitor` binary target (src/main.rs).
