//! `mapwatch attach`: wires the stages for one process — host check,
//! target, plan, pipeline, the live consumers of its snapshots — waits for
//! the session to end, and returns the final snapshot, the report.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    task::JoinSet,
};

use crate::{
    governor::Budget,
    host,
    loader::LoadedObject,
    model::{Snapshot, StopReason},
    pipeline::{Pipeline, PipelineOptions, Stopped},
    plan::{self, PlanRequest},
    process::Target,
    view::{
        jsonl::JsonLines,
        live::{
            plain,
            tui::{Action, LiveTui},
            LiveMode,
        },
        metrics::MetricsServer,
    },
};

/// What `mapwatch attach` was asked to do.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// The process to attach to.
    pub pid: u32,
    /// Stop after this long (else on Ctrl-C, SIGTERM or target exit).
    pub duration: Option<Duration>,
    /// What to probe.
    pub probes: PlanRequest,
    /// Serve Prometheus metrics on this address while attached.
    pub metrics: Option<std::net::SocketAddr>,
    /// Export map keys as they are (else as hashes: keys can be user data).
    pub metrics_expose_keys: bool,
    /// Where else to look for a stripped executable's debug file.
    pub debug_dirs: Vec<PathBuf>,
    /// Write one JSON snapshot per second to this file.
    pub jsonl: Option<PathBuf>,
    /// Pages per CPU ring buffer (a power of two).
    pub buffer_pages: usize,
    /// The live view while attached.
    pub live: LiveMode,
    /// The probes' overhead budget (`--overhead-budget`).
    pub overhead_budget: Budget,
}

/// Runs one attach session to completion and returns its report.
pub async fn attach(options: &AttachOptions) -> Result<Session> {
    let pid = options.pid;
    let started = std::time::Instant::now();
    host::check(&host::HostPaths::default())?;
    // The BPF object loads (maps made, programs verified) on another core
    // while the executable is read and planned.
    let loading = std::thread::spawn(LoadedObject::load);
    let target = Target::open(pid, &options.debug_dirs)?;
    log::debug!("PID {pid}: executable read in {:?}", started.elapsed());
    let plan = plan::plan(&target.exe, &options.probes).with_context(|| format!("PID {pid}"))?;
    log::debug!("PID {pid}: planned in {:?}", started.elapsed());
    let object = loading
        .join()
        .map_err(|_| anyhow::anyhow!("loading the BPF probes panicked"))?
        .context("loading the BPF probes")?;
    log::debug!("PID {pid}: BPF object loaded by {:?}", started.elapsed());
    let pipeline = Pipeline::start(
        &target,
        plan.into(),
        object,
        &PipelineOptions {
            buffer_pages: options.buffer_pages,
            map_selection: options.probes.map_selection.clone(),
            overhead_budget: options.overhead_budget,
        },
    )
    .with_context(|| format!("PID {pid}"))?;

    // The consumers of the snapshots, each its own task.
    let mut views: JoinSet<Result<()>> = JoinSet::new();
    if let Some(path) = &options.jsonl {
        let lines = JsonLines::create(path, options.metrics_expose_keys)
            .with_context(|| format!("creating {}", path.display()))?;
        let snapshots = pipeline.subscribe();
        let path = path.clone();
        views.spawn(async move {
            lines
                .follow(snapshots)
                .await
                .with_context(|| format!("writing {}", path.display()))
        });
    }
    let metrics = match options.metrics {
        Some(addr) => {
            let server =
                MetricsServer::bind(addr, pipeline.subscribe(), options.metrics_expose_keys)
                    .await?;
            eprintln!(
                "mapwatch: serving Prometheus metrics on http://{}/metrics",
                server.local_addr
            );
            Some(server)
        }
        None => None,
    };
    eprintln!(
        "mapwatch: attached {} probe(s) to PID {} ({}, {}), reading {} CPU(s); Ctrl-C to stop",
        pipeline.attached,
        pid,
        target.process.exe_display,
        target
            .exe
            .go
            .as_ref()
            .map_or("not Go", |go| go.version.as_str()),
        pipeline.cpus,
    );
    if options.live == LiveMode::Plain {
        let snapshots = pipeline.subscribe();
        views.spawn(async move {
            plain::follow(snapshots)
                .await
                .context("writing the live view to stdout")
        });
    }
    // The full-screen view runs here: it takes the keys that stop the session.
    let mut live = (options.live == LiveMode::Tui).then(|| pipeline.subscribe());
    let (mut tui, mut keys) = match &mut live {
        Some(live) => {
            let first = live.borrow_and_update().as_ref().clone();
            let (tui, keys) = LiveTui::start(first).context("starting the live terminal view")?;
            (Some(tui), Some(keys))
        }
        None => (None, None),
    };

    let stop = wait_for_stop(&target, options.duration);
    tokio::pin!(stop);
    // How soon a pipeline that failed on its own is noticed.
    let mut health = tokio::time::interval(Duration::from_millis(250));
    let stopped_by = loop {
        tokio::select! {
            reason = &mut stop => break reason?,
            key = async {
                match keys.as_mut() {
                    Some(keys) => keys.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match (key, tui.as_mut()) {
                    (Some(key), Some(view)) => {
                        if view.handle_key(key)? == Action::Quit {
                            break StopReason::Quit;
                        }
                    }
                    // The terminal is gone: go on without a view.
                    _ => keys = None,
                }
            }
            snapshot = async {
                match live.as_mut() {
                    Some(live) => match live.changed().await {
                        Ok(()) => Some(live.borrow_and_update().as_ref().clone()),
                        Err(_) => None,
                    },
                    None => std::future::pending().await,
                }
            } => {
                match (snapshot, tui.as_mut()) {
                    (Some(snapshot), Some(view)) => {
                        view.show(snapshot).context("drawing the live view")?;
                    }
                    // The pipeline ended: its error comes with the report.
                    _ => break StopReason::Signal,
                }
            }
            Some(result) = views.join_next() => {
                // A consumer ended before the session: that is an error.
                result.context("a live view failed")??;
            }
            _ = health.tick() => {
                if pipeline.is_finished() {
                    // It failed: its error comes with the report.
                    break StopReason::Signal;
                }
            }
        }
    };
    // Leave the full-screen view before the report is printed.
    drop(tui);
    let stopping = std::time::Instant::now();
    let (report, stopped) = pipeline
        .stop(stopped_by)
        .await
        .with_context(|| format!("PID {pid}"))?;
    log::debug!("PID {pid}: report ready in {:?}", stopping.elapsed());
    drop(metrics);
    while let Some(result) = views.join_next().await {
        result.context("a live view failed")??;
    }
    Ok(Session { report, stopped })
}

/// A finished session: its report, and its probes being detached.
pub struct Session {
    /// The final snapshot.
    pub report: Snapshot,
    /// The pipeline detaching its probes (each takes a kernel grace
    /// period): print the report first, then wait for it.
    pub stopped: Stopped,
}

/// Waits for the first of: SIGINT, SIGTERM, the duration, the target's exit.
async fn wait_for_stop(target: &Target, duration: Option<Duration>) -> Result<StopReason> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sigint.recv() => Ok(StopReason::Signal),
        _ = sigterm.recv() => Ok(StopReason::Signal),
        () = deadline => Ok(StopReason::Duration),
        () = target.exited() => Ok(StopReason::TargetExited),
    }
}
