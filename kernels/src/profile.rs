//! Per-op GPU timing with timestamp queries (`EASEL_PROFILE=1`).
//!
//! Every compute pass of a batch writes a begin and end timestamp; when the
//! batch is submitted the queries are resolved and read back, and the
//! durations are added to a per-op table. Reading back waits for the GPU, so
//! profiling changes the overlap of CPU and GPU work — it is a diagnostic
//! mode, off by default.

use std::collections::BTreeMap;

/// Work done by one dispatch, for GFLOP/s and GB/s columns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub flops: f64,
    pub bytes: f64,
}

impl Cost {
    pub fn new(flops: f64, bytes: f64) -> Self {
        Self { flops, bytes }
    }
}

/// Accumulated figures for one op.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpProfile {
    pub calls: u64,
    pub total_ns: f64,
    pub flops: f64,
    pub bytes: f64,
}

pub(crate) struct Profiler {
    pub(crate) query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
    pub(crate) table: BTreeMap<&'static str, OpProfile>,
}

pub(crate) fn enabled_by_env() -> bool {
    matches!(
        std::env::var("EASEL_PROFILE").as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

impl Profiler {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue, max_passes: u32) -> Self {
        let count = max_passes * 2;
        let query_set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("easel.profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let size = count as u64 * 8;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("easel.profile.resolve"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("easel.profile.readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            query_set,
            resolve,
            readback,
            period_ns: queue.get_timestamp_period() as f64,
            table: BTreeMap::new(),
        }
    }

    /// Records the resolve of `passes` passes' queries into `encoder`.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder, passes: u32) {
        if passes == 0 {
            return;
        }
        encoder.resolve_query_set(&self.query_set, 0..passes * 2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, passes as u64 * 16);
    }

    /// After the submit that carried [`Self::resolve`]: waits, reads, accumulates.
    pub(crate) fn collect(&mut self, device: &wgpu::Device, ops: &[(&'static str, Cost)]) {
        if ops.is_empty() {
            return;
        }
        let size = ops.len() as u64 * 16;
        self.readback
            .map_async(wgpu::MapMode::Read, 0..size, |_| {});
        if device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
            return;
        }
        {
            let Ok(view) = self.readback.get_mapped_range(0..size) else {
                return;
            };
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            for (i, (op, cost)) in ops.iter().enumerate() {
                let (b, e) = (stamps[2 * i], stamps[2 * i + 1]);
                let ns = e.saturating_sub(b) as f64 * self.period_ns;
                let entry = self.table.entry(op).or_default();
                entry.calls += 1;
                entry.total_ns += ns;
                entry.flops += cost.flops;
                entry.bytes += cost.bytes;
            }
        }
        self.readback.unmap();
    }
}

/// Formats the per-op table, slowest op first.
pub fn format_table(table: &BTreeMap<&'static str, OpProfile>) -> String {
    let mut rows: Vec<_> = table.iter().collect();
    rows.sort_by(|a, b| b.1.total_ns.total_cmp(&a.1.total_ns));
    let total: f64 = rows.iter().map(|r| r.1.total_ns).sum();
    let mut s = format!(
        "{:<24} {:>8} {:>12} {:>7} {:>11} {:>10}\n",
        "op", "calls", "total ms", "%", "GFLOP/s", "GB/s"
    );
    for (op, p) in rows {
        let secs = p.total_ns * 1e-9;
        let gflops = if secs > 0.0 {
            p.flops / secs * 1e-9
        } else {
            0.0
        };
        let gbs = if secs > 0.0 {
            p.bytes / secs * 1e-9
        } else {
            0.0
        };
        s.push_str(&format!(
            "{:<24} {:>8} {:>12.3} {:>6.1}% {:>11.1} {:>10.1}\n",
            op,
            p.calls,
            p.total_ns * 1e-6,
            if total > 0.0 {
                100.0 * p.total_ns / total
            } else {
                0.0
            },
            gflops,
            gbs
        ));
    }
    s.push_str(&format!(
        "{:<24} {:>8} {:>12.3}\n",
        "total",
        "",
        total * 1e-6
    ));
    s
}
