//! Event intake: one tokio task per CPU reads that CPU's perf ring buffer,
//! decodes the events and forwards them in batches, along with the kernel's
//! counts of events it had to drop.

use std::mem::size_of;

use aya::maps::{
    perf::{PerfEvent, PerfEventArrayBuffer},
    MapData, PerfEventArray,
};
use probe_common::LockEvent;
use thiserror::Error;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// What the intake forwards to the aggregator.
#[derive(Debug)]
pub enum IntakeMessage {
    /// Events read from one CPU's buffer, in order.
    Events(Vec<LockEvent>),
    /// The kernel dropped this many events on a CPU because its buffer was full.
    Lost {
        /// The CPU.
        cpu: u32,
        /// How many.
        count: u64,
    },
    /// A sample of unexpected size (a build mismatch; counted, not decoded).
    Malformed {
        /// The CPU.
        cpu: u32,
    },
}

/// Errors starting or running the intake.
#[derive(Debug, Error)]
pub enum IntakeError {
    /// The list of online CPUs could not be read.
    #[error("cannot list online CPUs ({0}): {1}")]
    Cpus(&'static str, std::io::Error),
    /// A CPU's ring buffer could not be opened.
    #[error("opening the ring buffer of CPU {cpu}: {reason}")]
    Open {
        /// The CPU.
        cpu: u32,
        /// What went wrong.
        reason: String,
    },
    /// Polling a CPU's ring buffer failed.
    #[error("reading the ring buffer of CPU {cpu}: {source}")]
    Poll {
        /// The CPU.
        cpu: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Running reader tasks, one per online CPU.
pub struct Intake {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), IntakeError>>>,
    /// The CPUs read.
    pub cpus: Vec<u32>,
}

impl Intake {
    /// Opens every online CPU's buffer (`pages` pages each, a power of two)
    /// and starts reading. Must be called within a tokio runtime.
    pub fn start(
        mut events: PerfEventArray<MapData>,
        pages: usize,
        tx: mpsc::UnboundedSender<IntakeMessage>,
    ) -> Result<Self, IntakeError> {
        let cpus = aya::util::online_cpus().map_err(|(what, e)| IntakeError::Cpus(what, e))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let buffer = events
                .open(cpu, Some(pages))
                .map_err(|e| IntakeError::Open {
                    cpu,
                    reason: e.to_string(),
                })?;
            // SAFETY: the buffer owns its perf event fd and keeps it open,
            // unchanged, until it is dropped with the AsyncFd.
            let fd = unsafe { AsyncFd::register_with_interest(buffer, Interest::READABLE) }
                .map_err(|e| IntakeError::Open {
                    cpu,
                    reason: e.to_string(),
                })?;
            tasks.push(tokio::spawn(read_cpu(cpu, fd, stop_rx.clone(), tx.clone())));
        }
        Ok(Self { stop, tasks, cpus })
    }

    /// Stops reading after one last drain of every buffer, so that events
    /// already in the buffers are not lost, and waits for the tasks.
    pub async fn stop(self) -> Result<(), IntakeError> {
        // Receivers may have gone if a task failed; that is reported below.
        let _ = self.stop.send(true);
        for task in self.tasks {
            match task.await {
                Ok(result) => result?,
                Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
            }
        }
        Ok(())
    }
}

async fn read_cpu(
    cpu: u32,
    mut fd: AsyncFd<PerfEventArrayBuffer<MapData>>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<IntakeMessage>,
) -> Result<(), IntakeError> {
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                // Stop requested (or the session is gone): drain what is left.
                let _ = changed;
                drain(cpu, fd.get_mut(), &tx);
                return Ok(());
            }
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(|source| IntakeError::Poll { cpu, source })?;
                drain(cpu, guard.get_inner_mut(), &tx);
                guard.clear_ready();
            }
        }
    }
}

/// Reads everything in one CPU's buffer.
fn drain(
    cpu: u32,
    buffer: &mut PerfEventArrayBuffer<MapData>,
    tx: &mpsc::UnboundedSender<IntakeMessage>,
) {
    while buffer.readable() {
        let mut batch = Vec::new();
        buffer.for_each(|event| match event {
            PerfEvent::Sample { head, tail } => match decode(head, tail) {
                Some(event) => batch.push(event),
                None => {
                    let _ = tx.send(IntakeMessage::Malformed { cpu });
                }
            },
            PerfEvent::Lost { count } => {
                let _ = tx.send(IntakeMessage::Lost { cpu, count });
            }
        });
        if !batch.is_empty() {
            // A closed channel means the session is ending; nothing to do.
            let _ = tx.send(IntakeMessage::Events(batch));
        }
    }
}

/// Decodes one sample, which may wrap around the ring's end and carries
/// alignment padding after the event.
pub fn decode(head: &[u8], tail: &[u8]) -> Option<LockEvent> {
    const SIZE: usize = size_of::<LockEvent>();
    if head.len() + tail.len() < SIZE {
        return None;
    }
    let mut bytes = [0u8; SIZE];
    let from_head = head.len().min(SIZE);
    bytes[..from_head].copy_from_slice(&head[..from_head]);
    bytes[from_head..].copy_from_slice(&tail[..SIZE - from_head]);
    // SAFETY: LockEvent is repr(C) plain old data of exactly SIZE bytes, and
    // every bit pattern is a valid value; read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<LockEvent>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_event() -> LockEvent {
        LockEvent {
            timestamp_ns: 1,
            lock_addr: 0xdead_beef,
            goroutine: 0xc000_0001,
            tgid: 42,
            tid: 43,
            cpu: 1,
            kind: 1,
            site_index: 0,
            _pad: 0,
        }
    }

    fn as_bytes(event: &LockEvent) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<LockEvent>()];
        // SAFETY: copying a POD struct into a buffer of its size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (event as *const LockEvent).cast::<u8>(),
                bytes.as_mut_ptr(),
                bytes.len(),
            )
        };
        bytes
    }

    #[test]
    fn decodes_a_sample_split_across_the_ring_end_with_padding() {
        let event = sample_event();
        let mut bytes = as_bytes(&event);
        bytes.extend_from_slice(&[0xff; 4]); // alignment padding
        for split in 0..bytes.len() {
            let (head, tail) = bytes.split_at(split);
            assert_eq!(decode(head, tail), Some(event), "split at {split}");
        }
    }

    #[test]
    fn rejects_short_samples() {
        let bytes = as_bytes(&sample_event());
        assert_eq!(decode(&bytes[..10], &[]), None);
    }
}
