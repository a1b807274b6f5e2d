//! Builds the kernel-side probe object (`probe-ebpf`) with the nightly
//! toolchain and bpf-linker, and leaves it in `OUT_DIR/mapwatch-probes` for
//! `include_bytes!`, so the `mapwatch` binary is one self-contained file.
//!
//! Set `MAPWATCH_BPF_OBJECT=/path/to/object` to embed a prebuilt object
//! instead, or `MAPWATCH_NO_BPF=1` to embed none (for `cargo check`,
//! `clippy` and `cargo test --lib` without the nightly and bpf-linker: the
//! binary then refuses to attach). Run `cargo xtask setup` once to install
//! what a real build needs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out_dir.join("mapwatch-probes");
    println!("cargo:rerun-if-env-changed=MAPWATCH_BPF_OBJECT");
    println!("cargo:rerun-if-env-changed=MAPWATCH_NO_BPF");
    if env::var_os("MAPWATCH_NO_BPF").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&dest, b"").unwrap_or_else(|e| {
            panic!(
                "cannot write an empty BPF object to {}: {e}",
                dest.display()
            )
        });
        return;
    }
    if let Some(prebuilt) = env::var_os("MAPWATCH_BPF_OBJECT") {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo:rerun-if-changed={}", prebuilt.display());
        copy(&prebuilt, &dest);
        return;
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .parent()
        .expect("daemon/ sits in the workspace root");
    for watched in [
        "probe-ebpf/src",
        "probe-ebpf/Cargo.toml",
        "probe-common/src",
        "probe-common/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // A target directory of its own: the outer cargo holds the lock on its own.
    let target_dir = cargo_target_root(&out_dir)
        .unwrap_or_else(|| out_dir.clone())
        .join("bpf");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--package",
            "probe-ebpf",
        ])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Nothing of the outer (stable, maybe clippy-wrapped) build may leak in.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("cannot run `rustup run nightly cargo` to build the BPF probes ({e}); run `cargo xtask setup` first")
    });
    if !status.success() {
        panic!(
            "building the BPF probes failed ({status}); `cargo xtask setup` installs the nightly \
             toolchain's rust-src and bpf-linker they need"
        );
    }
    copy(
        &target_dir.join("bpfel-unknown-none/release/mapwatch-probes"),
        &dest,
    );
}

/// The root of cargo's target directory: the nearest ancestor of `OUT_DIR`
/// holding the `CACHEDIR.TAG` cargo writes there.
fn cargo_target_root(out_dir: &Path) -> Option<PathBuf> {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| {
        panic!(
            "cannot copy BPF object {} to {}: {e}",
            from.display(),
            to.display()
        )
    });
}
