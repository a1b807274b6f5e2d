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

/// C++ fixture programs, one file each under `fixtures/cpp/`, built with
/// g++ into `target/fixtures/cpp/<NAME>`.
pub const CPP_FIXTURES: &[&str] = &["rwcond"];

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
    let debug_dir = fixtures_dir(root).join("debug");
    for fixture in C_FIXTURES {
        let plain = build_c(root, fixture)?;
        built.extend(strip_copy(&plain, &debug_dir)?);
        built.push(plain);
    }
    for fixture in CPP_FIXTURES {
        let plain = build_cpp(root, fixture)?;
        built.extend(strip_copy(&plain, &debug_dir)?);
        built.push(plain);
    }
    for fixture in RUST_FIXTURES {
        let plain = build_rust(root, fixture)?;
        built.extend(strip_copy(&plain, &debug_dir)?);
        built.push(plain);
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

/// Builds one C++ fixture with g++ (`-O2 -g -pthread`, C++17).
pub fn build_cpp(root: &Path, fixture: &str) -> Result<PathBuf> {
    let out_dir = fixtures_dir(root).join("cpp");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let output = out_dir.join(fixture);
    exec(
        Command::new("g++")
            .args([
                "-O2",
                "-g",
                "-pthread",
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-o",
            ])
            .arg(&output)
            .arg(root.join("fixtures/cpp").join(format!("{fixture}.cpp"))),
    )
    .with_context(|| format!("building C++ fixture {fixture} (g++ is needed)"))?;
    Ok(output)
}

/// Writes the stripped builds of a native fixture, as distributions ship
/// them, and their debug files:
/// - `NAME.stripped`: the same code and layout, no symbol table, no DWARF;
///   its debug file (`objcopy --only-keep-debug`) goes under `debug_dir`
///   by build ID (`debug_dir/.build-id/ab/cdef….debug`), which only a
///   `--debug-dir debug_dir` finds;
/// - `NAME.linked`: stripped too, with a `.gnu_debuglink` to
///   `.debug/NAME.debug` beside it (where gdb and mapwatch look by default).
pub fn strip_copy(plain: &Path, debug_dir: &Path) -> Result<Vec<PathBuf>> {
    let sibling = |suffix: &str| {
        let mut name = plain.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (stripped, linked) = (sibling(".stripped"), sibling(".linked"));
    let name = plain
        .file_name()
        .context("a fixture's file name")?
        .to_string_lossy()
        .into_owned();
    let dir = plain.parent().context("a fixture's directory")?;
    let tool = "binutils' strip, objcopy and readelf are needed";
    exec(
        Command::new("strip")
            .args(["--strip-all", "-o"])
            .arg(&stripped)
            .arg(plain),
    )
    .with_context(|| format!("stripping {} ({tool})", plain.display()))?;
    let id = build_id(plain)?;
    let by_id = debug_dir
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    let linked_debug = dir.join(".debug").join(format!("{name}.debug"));
    for debug in [&by_id, &linked_debug] {
        let parent = debug.parent().context("a debug file's directory")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        exec(
            Command::new("objcopy")
                .arg("--only-keep-debug")
                .arg(plain)
                .arg(debug),
        )
        .with_context(|| format!("writing {} ({tool})", debug.display()))?;
    }
    exec(
        Command::new("objcopy")
            .arg("--strip-all")
            .arg(format!("--add-gnu-debuglink={}", linked_debug.display()))
            .arg(plain)
            .arg(&linked),
    )
    .with_context(|| format!("writing {} ({tool})", linked.display()))?;
    Ok(vec![stripped, linked, by_id, linked_debug])
}

/// The GNU build ID of an ELF file, as hex, from `readelf -n`.
fn build_id(file: &Path) -> Result<String> {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(file)
        .output()
        .with_context(|| format!("running readelf -n {}", file.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .map(|id| id.trim().to_string())
        .filter(|id| id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| {
            format!(
                "{} has no build ID (gcc and rustc link with one on Debian)",
                file.display()
            )
        })
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
