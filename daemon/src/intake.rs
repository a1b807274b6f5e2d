//! Event intake: one tokio task per CPU reads that CPU's perf ring buffer,
//! decodes the events and forwards them in batches, along with the kernel's
//! counts of events it had to drop.
//!
//! The rings wake their reader at a watermark (an eighth full), not per
//! event, which keeps the cost of a probe hit low; a timer also drains them
//! every [`FLUSH_INTERVAL`], so quiet periods still show up promptly.

use std::{mem::size_of, os::fd::AsFd as _, time::Duration};

use aya::maps::MapData;
use probe_common::{EventHeader, EventTag, LockEvent, MapEvent, RuntimeEvent};
use thiserror::Error;
use tokio::{
    io::{unix::AsyncFd, Interest},
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::ring::{PerfRing, RingError};

/// How often a ring is drained even below its watermark. Measured here: at
/// a million events per second, a 100 ms interval let rings overflow while
/// their reader waited for a watermark wakeup; 10 ms never did.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// What the intake forwards to the aggregator.
#[derive(Debug)]
pub enum IntakeMessage {
    /// Events read from one CPU's buffer, in order.
    Events(Vec<LockEvent>),
    /// Map operations read from one CPU's buffer, in order.
    MapEvents(Vec<MapEvent>),
    /// Go runtime events (GC cycles, pauses) read from one CPU's buffer,
    /// in order.
    RuntimeEvents(Vec<RuntimeEvent>),
    /// Processes that executed a new program (the exec watcher's ring),
    /// in order.
    Execs(Vec<u32>),
    /// The kernel dropped this many events on a CPU because its buffer was full.
    Lost {
        /// The CPU.
        cpu: u32,
        /// How many.
        count: u64,
    },
    /// A sample with an unknown tag or too short for its tag (a build
    /// mismatch; counted, not decoded).
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
    #[error(transparent)]
    Open(#[from] RingError),
    /// A ring's fd could not be registered with the runtime.
    #[error("polling the ring buffer of CPU {cpu}: {source}")]
    Register {
        /// The CPU.
        cpu: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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
    /// The perf event array the rings are registered in.
    _events: MapData,
}

impl Intake {
    /// Opens a ring of `pages` pages (a power of two) for every online CPU,
    /// registers it in the `events` perf event array, and starts reading.
    /// Must be called within a tokio runtime.
    pub fn start(
        events: MapData,
        pages: usize,
        tx: mpsc::UnboundedSender<IntakeMessage>,
    ) -> Result<Self, IntakeError> {
        let cpus = aya::util::online_cpus().map_err(|(what, e)| IntakeError::Cpus(what, e))?;
        let (stop, stop_rx) = watch::channel(false);
        let page_size = page_size();
        let watermark = u32::try_from(pages * page_size / 8).unwrap_or(u32::MAX);
        let mut tasks = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let ring = PerfRing::open(events.fd().as_fd(), cpu, pages, watermark)?;
            // SAFETY: the ring owns its perf event fd and keeps it open,
            // unchanged, until it is dropped with the AsyncFd.
            let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(
                |e| IntakeError::Register {
                    cpu,
                    source: e.into_parts().1,
                },
            )?;
            tasks.push(tokio::spawn(read_cpu(cpu, fd, stop_rx.clone(), tx.clone())));
        }
        Ok(Self {
            stop,
            tasks,
            cpus,
            _events: events,
        })
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

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

async fn read_cpu(
    cpu: u32,
    mut fd: AsyncFd<PerfRing>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::UnboundedSender<IntakeMessage>,
) -> Result<(), IntakeError> {
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => {
                // Stop requested (or the session is gone): drain what is left.
                drain(cpu, fd.get_mut(), &tx);
                return Ok(());
            }
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(|source| IntakeError::Poll { cpu, source })?;
                drain(cpu, guard.get_inner_mut(), &tx);
                guard.clear_ready();
            }
            _ = flush.tick() => drain(cpu, fd.get_mut(), &tx),
        }
    }
}

/// Reads everything in one CPU's ring.
fn drain(cpu: u32, ring: &mut PerfRing, tx: &mpsc::UnboundedSender<IntakeMessage>) {
    let mut batch = Vec::new();
    let mut map_batch = Vec::new();
    let mut execs = Vec::new();
    let mut runtime = Vec::new();
    let mut malformed = 0;
    let mut lost = 0;
    ring.drain(
        |sample| match decode(sample, &[]) {
            Some(Event::Lock(event)) => batch.push(event),
            Some(Event::Map(event)) => map_batch.push(event),
            Some(Event::Exec(header)) => execs.push(header.tgid),
            Some(Event::Runtime(event)) => runtime.push(event),
            None => malformed += 1,
        },
        |count| lost += count,
    );
    if !map_batch.is_empty() {
        let _ = tx.send(IntakeMessage::MapEvents(map_batch));
    }
    if !execs.is_empty() {
        let _ = tx.send(IntakeMessage::Execs(execs));
    }
    if !runtime.is_empty() {
        let _ = tx.send(IntakeMessage::RuntimeEvents(runtime));
    }
    // A closed channel means the session is ending; nothing to do.
    for _ in 0..malformed {
        let _ = tx.send(IntakeMessage::Malformed { cpu });
    }
    if lost > 0 {
        let _ = tx.send(IntakeMessage::Lost { cpu, count: lost });
    }
    if !batch.is_empty() {
        let _ = tx.send(IntakeMessage::Events(batch));
    }
}

/// One decoded kernel event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A lock event.
    Lock(LockEvent),
    /// A map operation.
    Map(MapEvent),
    /// A process executed a new program.
    Exec(EventHeader),
    /// A Go GC cycle or pause.
    Runtime(RuntimeEvent),
}

/// Decodes one sample by the tag of its header. The sample may wrap around
/// the ring's end (`head`, then `tail`) and carries alignment padding after
/// the event.
pub fn decode(head: &[u8], tail: &[u8]) -> Option<Event> {
    let header: EventHeader = decode_pod(head, tail)?;
    match EventTag::from_raw(header.tag)? {
        EventTag::Lock => decode_pod(head, tail).map(Event::Lock),
        EventTag::Map => decode_pod(head, tail).map(Event::Map),
        EventTag::Exec => Some(Event::Exec(header)),
        EventTag::Runtime => decode_pod(head, tail).map(Event::Runtime),
    }
}

/// Decodes one plain-old-data value (`EventHeader`, `LockEvent`,
/// `MapEvent`: repr(C), integers only, every bit pattern valid) from the
/// start of a sample.
fn decode_pod<T: aya::Pod>(head: &[u8], tail: &[u8]) -> Option<T> {
    let size = size_of::<T>();
    if head.len() + tail.len() < size {
        return None;
    }
    let from_head = head.len().min(size);
    let mut value = std::mem::MaybeUninit::<T>::uninit();
    let bytes = value.as_mut_ptr().cast::<u8>();
    // SAFETY: `value` has room for `size` bytes; `from_head` bytes come from
    // `head` and the remaining `size - from_head` from `tail`, both checked
    // long enough above. T is Pod: repr(C) plain old data of exactly `size`
    // bytes, for which every bit pattern is a valid value, so once all of
    // them are written it is initialized.
    unsafe {
        std::ptr::copy_nonoverlapping(head.as_ptr(), bytes, from_head);
        std::ptr::copy_nonoverlapping(tail.as_ptr(), bytes.add(from_head), size - from_head);
        Some(value.assume_init())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(tag: u32) -> EventHeader {
        EventHeader {
            tag,
            cpu: 1,
            tgid: 42,
            tid: 43,
            timestamp_ns: 1,
        }
    }

    fn sample_event() -> LockEvent {
        LockEvent {
            header: header(EventTag::Lock as u32),
            lock_addr: 0xdead_beef,
            goroutine: 0xc000_0001,
            wait_ns: 1234,
            caller_ip: 0x4000,
            stack_id: 7,
            kind: 1,
            site_index: 0,
            role: 0,
            _pad: 0,
        }
    }

    fn as_bytes<T>(event: &T) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<T>()];
        // SAFETY: copying a POD struct into a buffer of its size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (event as *const T).cast::<u8>(),
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
            assert_eq!(
                decode(head, tail),
                Some(Event::Lock(event)),
                "split at {split}"
            );
        }
    }

    #[test]
    fn tells_events_apart_by_their_tag() {
        let mut map = MapEvent {
            header: header(EventTag::Map as u32),
            map_addr: 0x10,
            key_type: 0,
            key_int: 7,
            caller_ip: 0,
            key_hash: 9,
            site_index: 3,
            op: 0,
            key_kind: 1,
            key_len: 8,
            copied: 0,
            go_kind: 2,
            counted: 0,
            _pad: 0,
            key: [0; probe_common::MAX_KEY_BYTES],
            map_type: 0,
        };
        assert_eq!(decode(&as_bytes(&map), &[]), Some(Event::Map(map)));
        // A map event's tag on a lock-sized sample is too short: malformed.
        let lock = as_bytes(&sample_event());
        let mut relabelled = lock.clone();
        relabelled[..4].copy_from_slice(&(EventTag::Map as u32).to_le_bytes());
        assert_eq!(decode(&relabelled, &[]), None);
        // An unknown tag is malformed whatever the size.
        map.header.tag = 99;
        assert_eq!(decode(&as_bytes(&map), &[]), None);
    }

    #[test]
    fn rejects_short_samples() {
        let bytes = as_bytes(&sample_event());
        assert_eq!(decode(&bytes[..10], &[]), None);
        assert_eq!(decode(&bytes[..40], &[]), None);
    }
}
