//! A buffer pool that recycles freed storage buffers by size class.
//!
//! Model forward passes create and drop the same intermediate shapes every
//! call; recycling their buffers keeps allocation off the hot path. Size
//! classes are powers of two and their 1.5x midpoints, so at most a third of
//! a buffer is slack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Usage every tensor buffer gets: read/write storage plus copies for
/// uploads, downloads and `clear`.
pub(crate) const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Run-time counters of the pool.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensors (by size class).
    pub bytes_live: u64,
    /// Bytes sitting free in the pool, ready for reuse.
    pub bytes_pooled: u64,
    /// Highest `bytes_live + bytes_pooled` seen: the device memory the pool held.
    pub peak_bytes: u64,
    /// Highest `bytes_live` seen.
    pub peak_live_bytes: u64,
    /// Buffers created on the device.
    pub allocations: u64,
    /// Requests served from the pool without creating a buffer.
    pub reuses: u64,
}

#[derive(Default)]
struct Counters {
    live: AtomicU64,
    pooled: AtomicU64,
    peak: AtomicU64,
    peak_live: AtomicU64,
    allocations: AtomicU64,
    reuses: AtomicU64,
}

pub(crate) struct PoolInner {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    counters: Counters,
}

/// The pool. Cloning shares it.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<PoolInner>,
}

/// A buffer checked out of the pool; returned to it on drop.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    pool: Arc<PoolInner>,
}

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
    /// Capacity in bytes (the size class), at least the requested size.
    pub fn capacity(&self) -> u64 {
        self.class
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            let c = &self.pool.counters;
            c.live.fetch_sub(self.class, Ordering::Relaxed);
            c.pooled.fetch_add(self.class, Ordering::Relaxed);
            self.pool
                .free
                .lock()
                .expect("pool lock")
                .entry(self.class)
                .or_default()
                .push(buf);
        }
    }
}

/// Rounds a request up to its size class: 256 B minimum, then 2^k or 1.5*2^k.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    let mid = p / 2 + p / 4;
    if b <= mid && mid >= 256 { mid } else { p }
}

impl BufferPool {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(PoolInner {
                free: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// A buffer of at least `bytes`, reused when one of its class is free.
    pub(crate) fn get(&self, device: &wgpu::Device, bytes: u64) -> PooledBuffer {
        let class = size_class(bytes);
        let c = &self.inner.counters;
        let reused = self
            .inner
            .free
            .lock()
            .expect("pool lock")
            .get_mut(&class)
            .and_then(|v| v.pop());
        let buffer = match reused {
            Some(b) => {
                c.pooled.fetch_sub(class, Ordering::Relaxed);
                c.reuses.fetch_add(1, Ordering::Relaxed);
                b
            }
            None => {
                c.allocations.fetch_add(1, Ordering::Relaxed);
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("easel.tensor"),
                    size: class,
                    usage: TENSOR_USAGE,
                    mapped_at_creation: false,
                })
            }
        };
        let live = c.live.fetch_add(class, Ordering::Relaxed) + class;
        c.peak_live.fetch_max(live, Ordering::Relaxed);
        let total = live + c.pooled.load(Ordering::Relaxed);
        c.peak.fetch_max(total, Ordering::Relaxed);
        PooledBuffer {
            buffer: Some(buffer),
            class,
            pool: self.inner.clone(),
        }
    }

    pub fn stats(&self) -> MemoryStats {
        let c = &self.inner.counters;
        MemoryStats {
            bytes_live: c.live.load(Ordering::Relaxed),
            bytes_pooled: c.pooled.load(Ordering::Relaxed),
            peak_bytes: c.peak.load(Ordering::Relaxed),
            peak_live_bytes: c.peak_live.load(Ordering::Relaxed),
            allocations: c.allocations.load(Ordering::Relaxed),
            reuses: c.reuses.load(Ordering::Relaxed),
        }
    }

    /// Frees every pooled (unused) buffer back to the device.
    pub fn trim(&self) {
        let mut free = self.inner.free.lock().expect("pool lock");
        let bytes: u64 = free.iter().map(|(k, v)| k * v.len() as u64).sum();
        free.clear();
        self.inner
            .counters
            .pooled
            .fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Restarts the peak counters from the current usage (for per-run peaks).
    pub fn reset_peak(&self) {
        let c = &self.inner.counters;
        let live = c.live.load(Ordering::Relaxed);
        c.peak_live.store(live, Ordering::Relaxed);
        c.peak
            .store(live + c.pooled.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_request_with_bounded_slack() {
        for bytes in [
            1u64,
            255,
            256,
            257,
            383,
            384,
            385,
            1000,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes && c >= 256, "{bytes} -> {c}");
            assert!(
                c <= (bytes.max(256) * 3).div_ceil(2) + 1,
                "{bytes} -> {c} too slack"
            );
        }
        assert_eq!(size_class(384), 384);
        assert_eq!(size_class(385), 512);
    }
}
