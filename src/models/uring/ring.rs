//! The io_uring plumbing under the loop: the probe (`available`), the ring's setup and
//! sizing, the provided-buffer ring the kernel receives into, and how an operation is
//! encoded in its `user_data`. Apart so that `mod.rs` reads as the event loop alone.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, opcode};
use nix::libc;

/// What an operation is, in the top byte of its `user_data`; a connection's slot below.
pub(super) const ACCEPT: u64 = 1 << 56;
pub(super) const RECV: u64 = 2 << 56;
pub(super) const SEND: u64 = 3 << 56;
pub(super) const SHUTDOWN: u64 = 4 << 56;
pub(super) const POOL_DONE: u64 = 5 << 56;
/// The completion of a cancel request itself: nothing to do.
pub(super) const CANCEL: u64 = 6 << 56;
/// A poll on a connection's downstream socket (`--downstream`) came back.
pub(super) const DOWNSTREAM: u64 = 7 << 56;
pub(super) const KIND: u64 = 0xff << 56;

/// Submission queue entries; the completion queue is twice as long (the kernel's
/// default), and a full one is kept by the kernel, not dropped (`IORING_FEAT_NODROP`).
pub(super) const RING_ENTRIES: u32 = 1024;
/// The provided-buffer ring: how many receive buffers, of what size. Every connection
/// draws from these only while bytes are arriving; they go back as soon as copied.
pub(super) const BUFFERS: u16 = 512;
pub(super) const BUFFER_SIZE: usize = 4096;
pub(super) const BUFFER_GROUP: u16 = 0;

/// Checks that this kernel lets this process use what the model needs: an io_uring,
/// multishot accept and receive (Linux 5.19 and 6.0), provided-buffer rings. The
/// registry's `available` for `uring`.
///
/// # Errors
/// The kernel refuses (`ENOSYS`: too old or compiled without it; `EPERM`:
/// `kernel.io_uring_disabled` or a seccomp filter), or lacks an operation; the message
/// says which and what to do.
pub fn available() -> io::Result<()> {
    // Declared before the ring, so dropped after it.
    let mut buffers = BufRing::allocate(8, 64)?;
    let ring = new_ring(8).map_err(refused)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(refused)?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "accept"),
        (opcode::RecvMulti::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::AsyncCancel::CODE, "async cancel"),
        (opcode::PollAdd::CODE, "poll"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "this kernel's io_uring has no {name} operation; the uring model needs Linux 6.0 or later: serve with --model epoll instead"
                ),
            ));
        }
    }
    // Multishot receive came with Linux 6.0, after the opcodes; a provided-buffer ring
    // (5.19) is the other half of it. Registering one tells both apart from older kernels.
    buffers.register(&ring).map_err(|e| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "this kernel refuses a provided-buffer ring ({e}); the uring model needs Linux 6.0 or later: serve with --model epoll instead"
            ),
        )
    })?;
    let _ = ring.submitter().unregister_buf_ring(BUFFER_GROUP);
    Ok(())
}

/// The kernel's refusal, said so that a user knows what to do.
pub(super) fn refused(e: io::Error) -> io::Error {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| format!(" (kernel.io_uring_disabled = {})", s.trim()))
        .unwrap_or_default();
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "the kernel refuses io_uring here: {e}{disabled}; a container's seccomp filter or the sysctl can forbid it. Serve with --model epoll instead"
        ),
    )
}

/// A ring for one thread: only this thread submits (`SINGLE_ISSUER`), and the kernel
/// runs completion work when the loop waits, not by interrupting it (`DEFER_TASKRUN`,
/// Linux 6.1); a kernel without those flags gets a plain ring.
pub(super) fn new_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(entries)
        .or_else(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => IoUring::new(entries),
            _ => Err(e),
        })
}

/// Receive buffers the kernel picks from (a provided-buffer ring, `IORING_REGISTER_PBUF_RING`):
/// a ring of `{addr, len, bid}` entries this loop fills and the kernel consumes, and the
/// buffers they point to. A completion names the buffer it used (`bid`); the loop copies
/// the bytes out and puts the buffer back at the ring's tail.
pub(super) struct BufRing {
    /// `count` entries, page-aligned as the kernel requires.
    entries: *mut BufRingEntry,
    layout: std::alloc::Layout,
    buffers: Box<[u8]>,
    size: usize,
    count: u16,
    /// Our copy of the ring's tail; the kernel reads the published one.
    tail: u16,
    pub(super) registered: bool,
}

impl BufRing {
    /// `count` (a power of two) buffers of `size` bytes, all offered.
    pub(super) fn allocate(count: u16, size: usize) -> io::Result<BufRing> {
        debug_assert!(count.is_power_of_two());
        let layout = std::alloc::Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size (count >= 1); zeroed memory is a valid
        // BufRingEntry array (plain integers), with the tail at 0.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            layout,
            buffers: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
            count,
            tail: 0,
            registered: false,
        };
        for bid in 0..count {
            ring.provide(bid);
        }
        Ok(ring)
    }

    pub(super) fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` holds `count` entries and lives until after the ring is
        // unregistered or dropped: `Drop` frees it only once `unregister` has run or
        // the io_uring that used it is gone (see `serve`'s drop order).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries as u64,
                self.count,
                BUFFER_GROUP,
                0,
            )?;
        }
        self.registered = true;
        Ok(())
    }

    /// Offers buffer `bid` to the kernel again.
    pub(super) fn provide(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.buffers[usize::from(bid) * self.size..].as_ptr() as u64;
        // SAFETY: `index` < `count`, inside the allocation; the kernel reads only the
        // entries before the published tail, and this one is after it.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a u16 inside the first entry (the kernel's layout), aligned,
        // shared with the kernel only through atomic access; the release store publishes
        // the entry written above before the kernel can see the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.entries)
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes the kernel put into buffer `bid`.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.buffers[start..start + len.min(self.size)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `allocate` with this layout; by now the ring that read
        // it is unregistered or closed (`serve` drops the io_uring first).
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_what_to_do() {
        let e = refused(io::Error::from_raw_os_error(libc::EPERM));
        let text = e.to_string();
        assert!(text.contains("refuses io_uring"), "{text}");
        assert!(text.contains("--model epoll"), "{text}");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn the_buffer_ring_offers_every_buffer_and_takes_them_back() {
        let mut ring = BufRing::allocate(8, 64).unwrap();
        assert_eq!(ring.tail, 8);
        ring.provide(3);
        assert_eq!(ring.tail, 9);
        // The ninth entry wraps onto the first slot, pointing at buffer 3.
        // SAFETY: slot 0 is inside the allocation and no kernel holds the ring.
        let first = unsafe { &*ring.entries };
        assert_eq!(first.bid(), 3);
        assert_eq!(first.len(), 64);
        assert_eq!(
            ring.bytes(3, 1000).len(),
            64,
            "a length past the buffer is cut"
        );
    }
}
