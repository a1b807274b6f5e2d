//! One CPU's perf ring buffer for a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`, opened
//! with a byte watermark instead of a wakeup per event.
//!
//! aya's `PerfEventArray` opens every CPU's event with `wakeup_events = 1`,
//! so each `bpf_perf_event_output` queues an irq_work wakeup of the reader.
//! [`PerfRing`] instead sets `watermark = 1` with `wakeup_watermark` bytes:
//! the fd becomes readable only once that much data is pending, and the
//! caller is expected to also [`PerfRing::drain`] on a timer so that a quiet
//! ring does not hold events back indefinitely.
//!
//! Record parsing ([`parse_segments`]) works on plain byte slices so it can be
//! tested without the kernel.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

// ---------------------------------------------------------------------------
// Kernel ABI (include/uapi/linux/perf_event.h, include/uapi/linux/bpf.h).
// ---------------------------------------------------------------------------

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Bit 0 of the `perf_event_attr` flag word.
const ATTR_FLAG_DISABLED: u64 = 1 << 0;
/// Bit 14 of the `perf_event_attr` flag word: `wakeup_watermark` counts
/// bytes instead of `wakeup_events` counting events.
const ATTR_FLAG_WATERMARK: u64 = 1 << 14;

/// `PERF_RECORD_LOST`: `{ header, u64 id, u64 lost }`.
pub const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SAMPLE`: with `PERF_SAMPLE_RAW` only, `{ header, u32 size, u8 data[size] }`.
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// `sizeof(struct perf_event_header)`.
const HEADER_SIZE: usize = 8;

// `_IO('$', 0)` / `_IO('$', 1)`. `_IOC_NONE` is 1 (at bit 29) on mips,
// powerpc and sparc, 0 elsewhere.
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
))]
const IOC_NONE: libc::c_ulong = 1 << 29;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "sparc64"
)))]
const IOC_NONE: libc::c_ulong = 0;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = IOC_NONE | (b'$' as libc::c_ulong) << 8;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = IOC_NONE | (b'$' as libc::c_ulong) << 8 | 1;

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_ANY: u64 = 0;

/// Byte offsets of the ring positions in `struct perf_event_mmap_page`
/// (the first 1024 bytes are the self-monitoring part).
const MMAP_DATA_HEAD: usize = 1024;
const MMAP_DATA_TAIL: usize = 1032;

/// `struct perf_event_attr` up to `config3` (`PERF_ATTR_SIZE_VER8`, 136
/// bytes). The anonymous unions are flattened to the member we use.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    /// Union with `sample_freq`.
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// The bitfield word: disabled (bit 0), inherit, pinned, ..., watermark (bit 14), ...
    flags: u64,
    /// Union with `wakeup_events`.
    wakeup_watermark: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

const PERF_ATTR_SIZE_VER8: u32 = 136;
const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER8 as usize);

/// The `BPF_MAP_*_ELEM` member of `union bpf_attr`.
#[repr(C)]
struct BpfMapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// Why a [`PerfRing`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The perf event for the CPU could not be opened.
    #[error("perf_event_open(PERF_COUNT_SW_BPF_OUTPUT) on CPU {cpu}")]
    PerfEventOpen {
        /// The CPU.
        cpu: u32,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The ring could not be mapped.
    #[error("mmap of the perf ring on CPU {cpu}")]
    Mmap {
        /// The CPU.
        cpu: u32,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The perf event could not be put into the BPF perf event array.
    #[error("storing the perf event fd of CPU {cpu} into the perf event array")]
    MapUpdate {
        /// The CPU.
        cpu: u32,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The perf event could not be enabled.
    #[error("PERF_EVENT_IOC_ENABLE on CPU {cpu}")]
    Enable {
        /// The CPU.
        cpu: u32,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A ring size that is not a power of two pages.
    #[error("perf ring size must be a non-zero power of two pages, got {0}")]
    BadPages(usize),
    /// The page size is unknown.
    #[error("could not determine the page size")]
    PageSize(#[source] io::Error),
}

// ---------------------------------------------------------------------------
// The ring.
// ---------------------------------------------------------------------------

/// One CPU's perf ring buffer for a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
pub struct PerfRing {
    fd: OwnedFd,
    /// Start of the mapping: the metadata page, then `data_size` bytes of ring.
    base: NonNull<u8>,
    mmap_len: usize,
    page_size: usize,
    /// Size of the data area (a power of two).
    data_size: usize,
    cpu: u32,
    /// Holds records that wrap around the end of the ring.
    scratch: Vec<u8>,
}

// SAFETY: the mapping is owned exclusively by this value (nothing else holds
// `base`), and every access through `&self` only reads the fd and `cpu`;
// the ring itself is only touched through `&mut self` in `drain`.
unsafe impl Send for PerfRing {}
// SAFETY: see above; `&PerfRing` gives no access to the mapping.
unsafe impl Sync for PerfRing {}

impl PerfRing {
    /// Opens a `PERF_COUNT_SW_BPF_OUTPUT` event on `cpu` whose reader is
    /// woken once `watermark_bytes` bytes are pending, maps `1 + pages`
    /// pages, stores the event fd into `map_fd` at index `cpu` and enables
    /// the event.
    ///
    /// `pages` must be a power of two. The kernel caps the watermark at the
    /// ring size; `0` means half the ring.
    pub fn open(
        map_fd: BorrowedFd<'_>,
        cpu: u32,
        pages: usize,
        watermark_bytes: u32,
    ) -> Result<Self, RingError> {
        if pages == 0 || !pages.is_power_of_two() {
            return Err(RingError::BadPages(pages));
        }
        let page_size = page_size()?;
        let data_size = pages
            .checked_mul(page_size)
            .ok_or(RingError::BadPages(pages))?;
        let mmap_len = data_size
            .checked_add(page_size)
            .ok_or(RingError::BadPages(pages))?;

        let attr = PerfEventAttr {
            type_: PERF_TYPE_SOFTWARE,
            size: PERF_ATTR_SIZE_VER8,
            config: PERF_COUNT_SW_BPF_OUTPUT,
            sample_period: 1,
            sample_type: PERF_SAMPLE_RAW,
            // Start disabled; enabled once the fd is in the map.
            flags: ATTR_FLAG_DISABLED | ATTR_FLAG_WATERMARK,
            wakeup_watermark: watermark_bytes,
            ..PerfEventAttr::default()
        };
        // SAFETY: `attr` is a valid, fully initialised perf_event_attr whose
        // `size` matches its layout; the kernel only reads it during the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                -1 as libc::pid_t,
                cpu as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if ret < 0 {
            return Err(RingError::PerfEventOpen {
                cpu,
                source: io::Error::last_os_error(),
            });
        }
        let raw = RawFd::try_from(ret).map_err(|_| RingError::PerfEventOpen {
            cpu,
            source: io::Error::from(io::ErrorKind::InvalidData),
        })?;
        // SAFETY: perf_event_open succeeded, so `raw` is a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: mapping a fresh shared region of the perf fd; the kernel
        // validates the length (1 + 2^n pages) and offset 0.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::Mmap {
                cpu,
                source: io::Error::last_os_error(),
            });
        }
        let Some(base) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(RingError::Mmap {
                cpu,
                source: io::Error::from(io::ErrorKind::InvalidData),
            });
        };
        // From here on `ring`'s Drop unmaps and closes on every error path.
        let ring = PerfRing {
            fd,
            base,
            mmap_len,
            page_size,
            data_size,
            cpu,
            scratch: Vec::new(),
        };

        let key: u32 = cpu;
        let value: u32 = ring.fd.as_raw_fd() as u32;
        let elem = BpfMapElemAttr {
            map_fd: map_fd.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: BPF_ANY,
        };
        // SAFETY: `elem` is a valid bpf_attr prefix for BPF_MAP_UPDATE_ELEM;
        // `key` and `value` outlive the call and the kernel only reads them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_ELEM,
                &elem as *const BpfMapElemAttr,
                std::mem::size_of::<BpfMapElemAttr>() as libc::c_uint,
            )
        };
        if ret < 0 {
            return Err(RingError::MapUpdate {
                cpu,
                source: io::Error::last_os_error(),
            });
        }

        // SAFETY: plain ioctl without argument on a perf fd we own.
        let ret = unsafe { libc::ioctl(ring.fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
        if ret < 0 {
            return Err(RingError::Enable {
                cpu,
                source: io::Error::last_os_error(),
            });
        }
        Ok(ring)
    }

    /// The CPU this ring belongs to.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// Size in bytes of the data area.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// Reads every complete record currently in the ring, calling
    /// `on_sample` with the raw payload of each `PERF_RECORD_SAMPLE` and
    /// `on_lost` with the count of each `PERF_RECORD_LOST`, then hands the
    /// space back to the kernel. Returns the number of records read
    /// (including record types that are skipped).
    ///
    /// The payload is the `u32 size` bytes the kernel wrote, which include
    /// its padding to 8 bytes: a 48-byte event arrives as 52 bytes.
    pub fn drain(&mut self, on_sample: impl FnMut(&[u8]), on_lost: impl FnMut(u64)) -> usize {
        let head_ptr = self.meta_u64(MMAP_DATA_HEAD);
        let tail_ptr = self.meta_u64(MMAP_DATA_TAIL);
        // SAFETY: `head_ptr` points at the 8-aligned `data_head` of the live
        // mapping; the kernel updates it concurrently, hence the atomic.
        let head = unsafe { (*head_ptr).load(Ordering::Acquire) };
        // SAFETY: as above; only we write `data_tail`.
        let tail = unsafe { (*tail_ptr).load(Ordering::Relaxed) };

        // The kernel never lets head run more than one ring ahead of tail;
        // clamp anyway so a corrupt page cannot make us read out of bounds.
        let avail = usize::try_from(head.wrapping_sub(tail))
            .unwrap_or(usize::MAX)
            .min(self.data_size);
        if avail == 0 {
            return 0;
        }
        let start = (tail as usize) & (self.data_size - 1);
        let first_len = avail.min(self.data_size - start);
        // SAFETY: the data area is `data_size` bytes right after the first
        // page of the mapping, and `start + first_len <= data_size` and
        // `avail - first_len <= start`. The bytes in [tail, head) were fully
        // written before the kernel published `head` (Acquire above) and the
        // kernel does not touch them until we advance `data_tail`, so shared
        // slices over them are not raced.
        let (first, second) = unsafe {
            let data = self.base.as_ptr().add(self.page_size);
            (
                std::slice::from_raw_parts(data.add(start), first_len),
                std::slice::from_raw_parts(data, avail - first_len),
            )
        };
        let (records, consumed) =
            parse_segments(first, second, &mut self.scratch, on_sample, on_lost);
        if consumed > 0 {
            // SAFETY: as above; Release orders our reads of the records
            // before the kernel may reuse their space.
            unsafe {
                (*tail_ptr).store(tail.wrapping_add(consumed as u64), Ordering::Release);
            }
        }
        records
    }

    fn meta_u64(&self, offset: usize) -> *const AtomicU64 {
        // SAFETY: `offset` is one of the data_head/data_tail offsets, inside
        // the first (metadata) page of the mapping, and 8-aligned since the
        // mapping is page-aligned.
        unsafe { self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }
}

impl std::fmt::Debug for PerfRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfRing")
            .field("cpu", &self.cpu)
            .field("fd", &self.fd)
            .field("data_size", &self.data_size)
            .finish_non_exhaustive()
    }
}

impl AsFd for PerfRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PerfRing {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: plain ioctl without argument on a perf fd we own. Failure
        // is harmless: the event goes away when the last reference closes.
        unsafe {
            libc::ioctl(self.fd.as_raw_fd(), PERF_EVENT_IOC_DISABLE as _, 0);
        }
        // SAFETY: `base`/`mmap_len` are exactly the mapping made in `open`,
        // and no slice into it outlives `drain`.
        let ret = unsafe { libc::munmap(self.base.as_ptr().cast(), self.mmap_len) };
        if ret != 0 {
            log::warn!(
                "munmap of the perf ring of CPU {}: {}",
                self.cpu,
                io::Error::last_os_error()
            );
        }
        // `fd` closes itself.
    }
}

fn page_size() -> Result<usize, RingError> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ret = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ret <= 0 {
        return Err(RingError::PageSize(io::Error::last_os_error()));
    }
    usize::try_from(ret)
        .map_err(|_| RingError::PageSize(io::Error::from(io::ErrorKind::InvalidData)))
}

// ---------------------------------------------------------------------------
// Record parsing.
// ---------------------------------------------------------------------------

/// The readable bytes of a ring as (up to) two segments: `first` from the
/// tail to the ring end or head, then `second` from the ring start.
struct Segments<'a> {
    first: &'a [u8],
    second: &'a [u8],
}

impl<'a> Segments<'a> {
    fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    /// Bytes `[pos, pos + len)` of the concatenation, borrowed when they are
    /// contiguous and copied into `scratch` when they straddle the seam.
    /// The caller guarantees `pos + len <= self.len()`.
    fn get<'s>(&self, pos: usize, len: usize, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        let split = self.first.len();
        if pos + len <= split {
            &self.first[pos..pos + len]
        } else if pos >= split {
            &self.second[pos - split..pos - split + len]
        } else {
            scratch.clear();
            scratch.extend_from_slice(&self.first[pos..]);
            scratch.extend_from_slice(&self.second[..pos + len - split]);
            scratch
        }
    }
}

/// Parses the complete records in `first ++ second` (the readable bytes from
/// the tail onwards). Returns `(records, bytes consumed)`; a trailing partial
/// record is left for the next call.
fn parse_segments(
    first: &[u8],
    second: &[u8],
    scratch: &mut Vec<u8>,
    mut on_sample: impl FnMut(&[u8]),
    mut on_lost: impl FnMut(u64),
) -> (usize, usize) {
    let segs = Segments { first, second };
    let total = segs.len();
    let mut pos = 0;
    let mut records = 0;
    while total - pos >= HEADER_SIZE {
        let hdr = segs.get(pos, HEADER_SIZE, scratch);
        let type_ = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let size = usize::from(u16::from_ne_bytes([hdr[6], hdr[7]]));
        if size < HEADER_SIZE {
            // Cannot happen with a sane kernel; without a valid size there is
            // no next record to find, so give up on everything pending.
            log::warn!(
                "perf ring: record of size {size} < header; dropping {} bytes",
                total - pos
            );
            return (records, total);
        }
        if size > total - pos {
            break; // Partial record.
        }
        let rec = segs.get(pos, size, scratch);
        let body = &rec[HEADER_SIZE..];
        match type_ {
            PERF_RECORD_SAMPLE if body.len() >= 4 => {
                let raw_len = u32::from_ne_bytes([body[0], body[1], body[2], body[3]]) as usize;
                let raw = &body[4..];
                on_sample(&raw[..raw_len.min(raw.len())]);
            }
            PERF_RECORD_LOST if body.len() >= 16 => {
                let mut lost = [0u8; 8];
                lost.copy_from_slice(&body[8..16]);
                on_lost(u64::from_ne_bytes(lost));
            }
            _ => {}
        }
        records += 1;
        pos += size;
    }
    (records, pos)
}

/// [`parse_segments`] over a whole ring buffer (`ring.len()` a power of
/// two) with the kernel's free-running `head`/`tail` positions. Returns
/// `(records, new tail)`.
#[cfg(test)]
fn parse_ring(
    ring: &[u8],
    head: u64,
    tail: u64,
    scratch: &mut Vec<u8>,
    on_sample: impl FnMut(&[u8]),
    on_lost: impl FnMut(u64),
) -> (usize, u64) {
    let size = ring.len();
    assert!(size.is_power_of_two());
    let avail = (head.wrapping_sub(tail) as usize).min(size);
    let start = tail as usize & (size - 1);
    let first_len = avail.min(size - start);
    let first = &ring[start..start + first_len];
    let second = &ring[..avail - first_len];
    let (records, consumed) = parse_segments(first, second, scratch, on_sample, on_lost);
    (records, tail.wrapping_add(consumed as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Rec {
        Sample(Vec<u8>),
        Lost(u64),
    }

    fn sample_record(payload: &[u8]) -> Vec<u8> {
        // Like the kernel: u32 size + data, padded to 8 bytes overall, with
        // the padding counted in the u32 size.
        let raw_size = (4 + payload.len()).next_multiple_of(8) - 4;
        let size = HEADER_SIZE + 4 + raw_size;
        let mut r = Vec::new();
        r.extend_from_slice(&PERF_RECORD_SAMPLE.to_ne_bytes());
        r.extend_from_slice(&0u16.to_ne_bytes());
        r.extend_from_slice(&(size as u16).to_ne_bytes());
        r.extend_from_slice(&(raw_size as u32).to_ne_bytes());
        r.extend_from_slice(payload);
        r.resize(size, 0);
        r
    }

    fn lost_record(id: u64, lost: u64) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&PERF_RECORD_LOST.to_ne_bytes());
        r.extend_from_slice(&0u16.to_ne_bytes());
        r.extend_from_slice(&24u16.to_ne_bytes());
        r.extend_from_slice(&id.to_ne_bytes());
        r.extend_from_slice(&lost.to_ne_bytes());
        r
    }

    /// Writes `bytes` into `ring` at free-running position `pos`, wrapping.
    fn put(ring: &mut [u8], pos: u64, bytes: &[u8]) {
        let mask = ring.len() - 1;
        for (i, b) in bytes.iter().enumerate() {
            ring[(pos as usize + i) & mask] = *b;
        }
    }

    fn parse(ring: &[u8], head: u64, tail: u64) -> (usize, u64, Vec<Rec>) {
        let out = std::cell::RefCell::new(Vec::new());
        let mut scratch = Vec::new();
        let (n, new_tail) = parse_ring(
            ring,
            head,
            tail,
            &mut scratch,
            |s| out.borrow_mut().push(Rec::Sample(s.to_vec())),
            |l| out.borrow_mut().push(Rec::Lost(l)),
        );
        (n, new_tail, out.into_inner())
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
    }

    /// The payload as delivered: padded so that 4 + len is a multiple of 8.
    fn padded(p: &[u8]) -> Vec<u8> {
        let mut v = p.to_vec();
        v.resize((4 + p.len()).next_multiple_of(8) - 4, 0);
        v
    }

    #[test]
    fn empty_ring() {
        let ring = vec![0u8; 256];
        assert_eq!(parse(&ring, 40, 40), (0, 40, vec![]));
    }

    #[test]
    fn contiguous_samples_and_lost() {
        let mut ring = vec![0u8; 256];
        let a = payload(48, 1);
        let b = payload(13, 100);
        let mut pos = 0u64;
        for rec in [sample_record(&a), lost_record(7, 42), sample_record(&b)] {
            put(&mut ring, pos, &rec);
            pos += rec.len() as u64;
        }
        let (n, tail, recs) = parse(&ring, pos, 0);
        assert_eq!(n, 3);
        assert_eq!(tail, pos);
        assert_eq!(
            recs,
            vec![
                Rec::Sample(padded(&a)),
                Rec::Lost(42),
                Rec::Sample(padded(&b))
            ]
        );
        // A 48-byte event is delivered as 52 bytes (kernel padding).
        assert_eq!(padded(&a).len(), 52);
    }

    #[test]
    fn header_wraps_around_ring_end() {
        let mut ring = vec![0u8; 128];
        // Start 4 bytes before the end: the header itself straddles the seam.
        let tail = 1024 + 124;
        let p = payload(48, 9);
        let rec = sample_record(&p);
        put(&mut ring, tail, &rec);
        let head = tail + rec.len() as u64;
        let (n, new_tail, recs) = parse(&ring, head, tail);
        assert_eq!((n, new_tail), (1, head));
        assert_eq!(recs, vec![Rec::Sample(padded(&p))]);
    }

    #[test]
    fn payload_wraps_around_ring_end() {
        let mut ring = vec![0u8; 128];
        // Header and size fit before the end; the payload wraps.
        let tail = 128 * 3 + 96;
        let p = payload(48, 200);
        let rec = sample_record(&p);
        put(&mut ring, tail, &rec);
        let head = tail + rec.len() as u64;
        let (n, new_tail, recs) = parse(&ring, head, tail);
        assert_eq!((n, new_tail), (1, head));
        assert_eq!(recs, vec![Rec::Sample(padded(&p))]);
    }

    #[test]
    fn lost_record_wraps() {
        let mut ring = vec![0u8; 64];
        let tail = 48;
        let rec = lost_record(1, u64::MAX - 3);
        put(&mut ring, tail, &rec);
        let head = tail + rec.len() as u64;
        let (n, new_tail, recs) = parse(&ring, head, tail);
        assert_eq!((n, new_tail), (1, head));
        assert_eq!(recs, vec![Rec::Lost(u64::MAX - 3)]);
    }

    #[test]
    fn partial_record_is_left_in_place() {
        let mut ring = vec![0u8; 256];
        let a = payload(48, 1);
        let ra = sample_record(&a);
        let rb = sample_record(&payload(48, 2));
        put(&mut ring, 0, &ra);
        put(&mut ring, ra.len() as u64, &rb);
        let full = (ra.len() + rb.len()) as u64;

        // Only part of the second record is published.
        let (n, tail, recs) = parse(&ring, full - 10, 0);
        assert_eq!((n, tail), (1, ra.len() as u64));
        assert_eq!(recs, vec![Rec::Sample(padded(&a))]);

        // Only part of a header.
        let (n, tail, recs) = parse(&ring, ra.len() as u64 + 5, ra.len() as u64);
        assert_eq!((n, tail), (0, ra.len() as u64));
        assert!(recs.is_empty());

        // Everything published: the second record comes out.
        let (n, tail, _) = parse(&ring, full, ra.len() as u64);
        assert_eq!((n, tail), (1, full));
    }

    #[test]
    fn unknown_records_are_skipped() {
        let mut ring = vec![0u8; 64];
        let mut other = Vec::new();
        other.extend_from_slice(&5u32.to_ne_bytes()); // PERF_RECORD_THROTTLE
        other.extend_from_slice(&0u16.to_ne_bytes());
        other.extend_from_slice(&16u16.to_ne_bytes());
        other.extend_from_slice(&[0xaa; 8]);
        put(&mut ring, 0, &other);
        let lost = lost_record(0, 3);
        put(&mut ring, 16, &lost);
        let (n, tail, recs) = parse(&ring, 40, 0);
        assert_eq!((n, tail), (2, 40));
        assert_eq!(recs, vec![Rec::Lost(3)]);
    }

    #[test]
    fn corrupt_size_drops_everything() {
        let ring = vec![0u8; 64]; // type 0, size 0
        let (n, tail, recs) = parse(&ring, 32, 0);
        assert_eq!((n, tail), (0, 32));
        assert!(recs.is_empty());
    }

    #[test]
    fn bad_pages_rejected() {
        // SAFETY: fd 0 is only borrowed for the call, which fails before
        // using it.
        let fd = unsafe { BorrowedFd::borrow_raw(0) };
        assert!(matches!(
            PerfRing::open(fd, 0, 3, 4096),
            Err(RingError::BadPages(3))
        ));
        assert!(matches!(
            PerfRing::open(fd, 0, 0, 4096),
            Err(RingError::BadPages(0))
        ));
    }

    /// `union bpf_attr` for BPF_MAP_CREATE, padded with zeros.
    #[repr(C)]
    struct BpfMapCreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        rest: [u8; 112],
    }

    fn create_perf_event_array() -> io::Result<OwnedFd> {
        const BPF_MAP_CREATE: libc::c_long = 0;
        const BPF_MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let attr = BpfMapCreateAttr {
            map_type: BPF_MAP_TYPE_PERF_EVENT_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: cpus as u32,
            rest: [0; 112],
        };
        // SAFETY: `attr` is a zero-padded bpf_attr for BPF_MAP_CREATE that
        // the kernel only reads during the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                &attr as *const BpfMapCreateAttr,
                std::mem::size_of::<BpfMapCreateAttr>() as libc::c_uint,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: BPF_MAP_CREATE returned a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }

    #[test]
    fn open_real_ring_on_cpu0() {
        let map = match create_perf_event_array() {
            Ok(map) => map,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipping: no permission to create BPF maps ({e})");
                return;
            }
            Err(e) => panic!("BPF_MAP_CREATE: {e}"),
        };
        let mut ring = PerfRing::open(map.as_fd(), 0, 8, 8 * 4096 / 4).expect("open PerfRing");
        assert_eq!(ring.cpu(), 0);
        assert!(ring.as_raw_fd() >= 0);
        assert_eq!(ring.data_size(), 8 * page_size().expect("page size"));
        let n = ring.drain(
            |_| panic!("unexpected sample"),
            |_| panic!("unexpected lost"),
        );
        assert_eq!(n, 0);

        // CPU number `possible CPUs` does not exist: perf_event_open fails.
        let cpus = aya::util::nr_cpus().expect("nr_cpus") as u32;
        assert!(matches!(
            PerfRing::open(map.as_fd(), cpus, 1, 0),
            Err(RingError::PerfEventOpen { .. })
        ));
        drop(ring);
    }

    /// Loads an XDP program that emits one 48-byte sample per run with
    /// `bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, buf, 48)`.
    fn load_emitter(map: BorrowedFd<'_>) -> io::Result<OwnedFd> {
        fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
            u64::from(code)
                | u64::from(dst & 0xf | (src & 0xf) << 4) << 8
                | u64::from(off as u16) << 16
                | u64::from(imm as u32) << 32
        }
        let mut prog = vec![insn(0xbf, 6, 1, 0, 0)]; // r6 = r1
        for i in 1..=6 {
            // *(u64 *)(r10 - 8 i) = i
            prog.push(insn(0x7a, 10, 0, -8 * i as i16, i));
        }
        prog.push(insn(0xbf, 1, 6, 0, 0)); // r1 = r6
        prog.push(insn(0x18, 2, 1, 0, map.as_raw_fd())); // r2 = map (pseudo fd)
        prog.push(0);
        prog.push(insn(0xb4, 3, 0, 0, -1)); // w3 = BPF_F_CURRENT_CPU
        prog.push(insn(0xbf, 4, 10, 0, 0)); // r4 = r10
        prog.push(insn(0x07, 4, 0, 0, -48)); // r4 += -48
        prog.push(insn(0xb7, 5, 0, 0, 48)); // r5 = 48
        prog.push(insn(0x85, 0, 0, 0, 25)); // call bpf_perf_event_output
        prog.push(insn(0xb7, 0, 0, 0, 2)); // r0 = XDP_PASS
        prog.push(insn(0x95, 0, 0, 0, 0)); // exit

        let license = b"GPL\0";
        let mut attr = [0u64; 16];
        attr[0] = 6 | (prog.len() as u64) << 32; // BPF_PROG_TYPE_XDP, insn_cnt
        attr[1] = prog.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        // SAFETY: `attr` is a zero-padded bpf_attr for BPF_PROG_LOAD whose
        // pointers (`prog`, `license`) outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                5 as libc::c_long,
                attr.as_ptr(),
                128 as libc::c_uint,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: BPF_PROG_LOAD returned a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }

    fn run_emitter(prog: BorrowedFd<'_>, times: u32) -> io::Result<()> {
        let data = [0u8; 64];
        let mut attr = [0u64; 10];
        attr[0] = prog.as_raw_fd() as u32 as u64; // prog_fd, retval
        attr[1] = data.len() as u64; // data_size_in, data_size_out
        attr[2] = data.as_ptr() as u64; // data_in
        attr[4] = u64::from(times); // repeat, duration
                                    // SAFETY: `attr` is a zero-padded bpf_attr for BPF_PROG_TEST_RUN;
                                    // `data` outlives the call and there is no output buffer.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                10 as libc::c_long,
                attr.as_ptr(),
                80 as libc::c_uint,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
        ret == 1 && pfd.revents & libc::POLLIN != 0
    }

    /// Real samples through an XDP test run pinned to CPU 0: the fd only
    /// becomes readable once the watermark is reached, and `drain` returns
    /// every sample before that too.
    #[test]
    fn real_samples_and_watermark() {
        let map = match create_perf_event_array() {
            Ok(map) => map,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipping: no permission to create BPF maps ({e})");
                return;
            }
            Err(e) => panic!("BPF_MAP_CREATE: {e}"),
        };
        let prog = load_emitter(map.as_fd()).expect("load XDP emitter");
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this test thread.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        assert_eq!(pinned, 0, "pin to CPU 0: {}", io::Error::last_os_error());

        // 4 pages, watermark a quarter of that; each record is 64 bytes.
        let data_size = 4 * page_size().expect("page size");
        let watermark = data_size / 4;
        let per_wakeup = watermark / 64;
        let mut ring = PerfRing::open(map.as_fd(), 0, 4, watermark as u32).expect("open");

        run_emitter(prog.as_fd(), 10).expect("test run");
        assert!(!readable(ring.as_fd()), "readable below the watermark");
        let mut samples = Vec::new();
        let n = ring.drain(|s| samples.push(s.to_vec()), |l| panic!("lost {l}"));
        assert_eq!(n, 10);
        assert_eq!(samples.len(), 10);
        let mut want = Vec::new();
        for i in (1..=6u64).rev() {
            want.extend_from_slice(&i.to_ne_bytes());
        }
        want.extend_from_slice(&[0; 4]); // kernel padding: 52 bytes delivered
        assert!(samples.iter().all(|s| *s == want), "{:?}", samples[0]);

        // Reach the watermark: readable. Going around the ring several
        // times in chunks exercises the wrap-around.
        for _ in 0..10 {
            run_emitter(prog.as_fd(), per_wakeup as u32 + 1).expect("test run");
            assert!(readable(ring.as_fd()), "not readable at the watermark");
            let mut count = 0;
            let n = ring.drain(
                |s| {
                    assert_eq!(s, &want[..]);
                    count += 1;
                },
                |l| panic!("lost {l}"),
            );
            assert_eq!(n, per_wakeup + 1);
            assert_eq!(count, per_wakeup + 1);
        }

        // Overflow: more than the ring holds gives a LOST record.
        run_emitter(prog.as_fd(), (data_size / 64) as u32 + 100).expect("test run");
        let mut got = 0u64;
        let mut lost = 0u64;
        ring.drain(|_| got += 1, |l| lost += l);
        // The LOST record is written once space frees up, so drain again
        // after one more sample.
        run_emitter(prog.as_fd(), 1).expect("test run");
        ring.drain(|_| got += 1, |l| lost += l);
        assert_eq!(
            got + lost,
            (data_size / 64) as u64 + 101,
            "got {got} lost {lost}"
        );
        assert!(lost > 0);
    }
}
