//! Builds the Go fixtures (`fixtures/go/*`) with every Go version of
//! [`GO_VERSIONS`](crate::setup::GO_VERSIONS), plain, stripped, and the
//! stripped build's twin with symbols (see [`build`]).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{exec, setup};

/// Fixture programs, one directory each under `fixtures/go/`.
pub const GO_FIXTURES: &[&str] = &[
    "contend",
    "slowpath",
    "casloop",
    "callsites",
    "hotkeys",
    "blocking",
    "spike",
    "holders",
    "convoy",
    "starve",
    "rtlock",
    "maphealth",
];

/// C fixture programs, one file each under `fixtures/c/`, built with gcc
/// into `target/fixtures/c/<NAME>`.
pub const C_FIXTURES: &[&str] = &["casloop", "lockloop"];

/// Rust fixture programs, one file each under `fixtures/rust/`, built with
/// rustc into `target/fixtures/rust/<NAME>`.
pub const RUST_FIXTURES: &[&str] = &["lockloop"];

/// Where fixtures are built: `target/fixtures/go<VERSION>/<NAME>[.stripped]`.
pub fn fixtures_dir(root: &Path) -> PathBuf {
    root.join("target/fixtures")
}

/// Builds every fixture with every Go version, and the C fixtures; returns
/// the built paths.
pub fn build_all(root: &Path) -> Result<Vec<PathBuf>> {
    let mut built = Vec::new();
    for fixture in C_FIXTURES {
        let plain = build_c(root, fixture)?;
        built.push(strip_copy(&plain)?);
        built.push(plain);
    }
    for fixture in RUST_FIXTURES {
        built.push(build_rust(root, fixture)?);
    }
    for version in setup::GO_VERSIONS {
        for fixture in GO_FIXTURES {
            built.extend(build(root, version, fixture)?);
        }
    }
    Ok(built)
}

/// Builds one fixture with one Go version, three ways:
/// - `NAME`: a default build (symbol table and DWARF);
/// - `NAME.stripped`: `-ldflags='-s -w'`, no symbol table, no DWARF;
/// - `NAME.symtab`: the stripped build's twin with a symbol table. Go
///   records `-ldflags` in the binary's build info, which moves the data
///   segment, so only a build with flags of the same length (`-w -w`: no
///   DWARF, symbol table kept) has its globals at the same addresses. Tests
///   use it as the oracle for addresses in the stripped build.
pub fn build(root: &Path, version: &str, fixture: &str) -> Result<Vec<PathBuf>> {
    let goroot = setup::goroot(root, version);
    let out_dir = fixtures_dir(root).join(format!("go{version}"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let plain = out_dir.join(fixture);
    let stripped = out_dir.join(format!("{fixture}.stripped"));
    let twin = out_dir.join(format!("{fixture}.symtab"));
    for (output, ldflags) in [(&plain, ""), (&stripped, "-s -w"), (&twin, "-w -w")] {
        exec(
            Command::new(goroot.join("bin/go"))
                .current_dir(root.join("fixtures/go"))
                .env("GOROOT", &goroot)
                .env("GOCACHE", root.join("target/go-cache").join(version))
                .env("GOPATH", root.join("target/go-path"))
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off")
                .env("GOFLAGS", "-mod=mod")
                .env("CGO_ENABLED", "0")
                .args(["build", "-o"])
                .arg(output)
                .arg(format!("-ldflags={ldflags}"))
                .arg(format!("./{fixture}")),
        )
        .with_context(|| format!("building fixture {fixture} with Go {version}"))?;
    }
    Ok(vec![plain, stripped, twin])
}

/// Builds one C fixture with gcc (`-O2 -g`, position-independent as Debian's
/// gcc does by default).
pub fn build_c(root: &Path, fixture: &str) -> Result<PathBuf> {
    let out_dir = fixtures_dir(root).join("c");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let output = out_dir.join(fixture);
    exec(
        Command::new("gcc")
            .args(["-O2", "-g", "-pthread", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&output)
            .arg(root.join("fixtures/c").join(format!("{fixture}.c"))),
    )
    .with_context(|| format!("building C fixture {fixture} (gcc is needed)"))?;
    Ok(output)
}

/// Writes `NAME.stripped` beside a native fixture: the same code and
/// layout, no symbol table, no DWARF (what a distribution ships).
pub fn strip_copy(plain: &Path) -> Result<PathBuf> {
    let mut name = plain.as_os_str().to_owned();
    name.push(".stripped");
    let stripped = PathBuf::from(name);
    exec(
        Command::new("strip")
            .args(["--strip-all", "-o"])
            .arg(&stripped)
            .arg(plain),
    )
    .with_context(|| format!("stripping {} (binutils' strip is needed)", plain.display()))?;
    Ok(stripped)
}

/// Builds one Rust fixture with rustc (`-O -g`, edition 2021).
pub fn build_rust(root: &Path, fixture: &str) -> Result<PathBuf> {
    let out_dir = fixtures_dir(root).join("rust");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let output = out_dir.join(fixture);
    exec(
        Command::new("rustc")
            .args(["-O", "-g", "--edition", "2021", "-o"])
            .arg(&output)
            .arg(root.join("fixtures/rust").join(format!("{fixture}.rs"))),
    )
    .with_context(|| format!("building Rust fixture {fixture}"))?;
    Ok(output)
}
