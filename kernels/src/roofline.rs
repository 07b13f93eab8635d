//! The adapter's roofline: how fast it multiply-adds from registers and what one
//! per-lane vec4 load or store costs, and from those a lower bound on the time of a
//! profiled workload.
//!
//! This answers "how far is this kernel from what the device can do?" with figures
//! measured on the device itself rather than taken from a datasheet: on a CPU driver
//! such as lavapipe the costs that matter are the driver's code generation (it splits
//! `fma` into a multiply and an add, and runs every per-lane load as a loop over the
//! lanes), which no datasheet states.

use bytemuck::{Pod, Zeroable};
use std::collections::BTreeMap;

use crate::bench::time_ms;
use crate::profile::OpProfile;
use crate::{Access, Cost, DType, Gpu, Kernel, Result, Tensor};

const SRC: &str = include_str!("roofline.wgsl");
const OP: &str = "roofline";
const BINDINGS: &[Access] = &[Access::Read, Access::ReadWrite];
/// vec4 loads or stores per invocation in the memory probes.
const LANE_VECS: usize = 16;
/// Multiply-adds per invocation and loop trip of the `mac_*` probes (32 vec4 steps).
const MACS_PER_TRIP: usize = 32 * 4;
/// The multiply-add probes and their chain counts.
const MAC_PROBES: [(&str, usize); 2] = [("mac_wide", 8), ("mac_deep", 2)];

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    iters: u32,
    a: f32,
    b: f32,
}

/// Measured device figures (best of several timed runs, so the least disturbed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// Scalar f32 multiply-adds per second from registers.
    pub macs_per_s: f64,
    /// Seconds per f32 moved by a per-lane vec4 load.
    pub load_s_per_f32: f64,
    /// Seconds per f32 moved by a per-lane vec4 store.
    pub store_s_per_f32: f64,
}

impl Roofline {
    /// Lower bound on the seconds of a pass that does `flops` (2 per multiply-add) and
    /// moves `bytes` of f32 through per-lane loads and stores.
    ///
    /// Arithmetic and memory time are added, not overlapped: on a CPU driver both are
    /// instructions issued by the same cores (measured: a vec4 load followed by K
    /// multiply-adds costs the load plus the K multiply-adds). Memory is charged at the
    /// cheaper of the load and store costs, so the bound holds whatever the mix.
    pub fn floor_s(&self, cost: Cost) -> f64 {
        let mem = self.load_s_per_f32.min(self.store_s_per_f32);
        cost.flops / 2.0 / self.macs_per_s + cost.bytes / 4.0 * mem
    }

    /// [`Roofline::floor_s`] of every op of a profile table, as
    /// `(op, measured seconds, floor seconds)`, with the table's totals last.
    pub fn floors(&self, table: &BTreeMap<&'static str, OpProfile>) -> Vec<(String, f64, f64)> {
        let mut rows: Vec<(String, f64, f64)> = table
            .iter()
            .map(|(op, p)| {
                let floor = self.floor_s(Cost::new(p.flops, p.bytes));
                (op.to_string(), p.total_ns * 1e-9, floor)
            })
            .collect();
        let (t, f) = rows.iter().fold((0.0, 0.0), |(t, f), r| (t + r.1, f + r.2));
        rows.push(("total".into(), t, f));
        rows
    }
}

/// Runs the three probes on `gpu` (about a second on lavapipe) and returns the best of
/// `reps` timings of each.
pub fn measure(gpu: &Gpu, reps: usize) -> Result<Roofline> {
    let inv = 1usize << 16;
    let iters = 256usize;
    let buf = Tensor::empty_for(gpu, OP, &[LANE_VECS * inv * 4], DType::F32)?;
    let out = Tensor::empty_for(gpu, OP, &[LANE_VECS * inv * 4], DType::F32)?;
    // The best (least disturbed) of `reps` synchronised runs, in seconds.
    let best = |entry: &'static str, iters: usize| -> Result<f64> {
        let (_median, min_ms) = time_ms(gpu, 1, reps, || {
            run(gpu, entry, inv, iters, &buf, &out)?;
            Ok(out.clone())
        })?;
        Ok(min_ms * 1e-3)
    };
    let mut mac_s = f64::MAX;
    for (entry, _) in MAC_PROBES {
        mac_s = mac_s.min(best(entry, iters)?);
    }
    let load_s = best("load", 0)?;
    let store_s = best("store", 0)?;
    let moved = (inv * LANE_VECS * 4) as f64;
    Ok(Roofline {
        macs_per_s: (inv * iters * MACS_PER_TRIP) as f64 / mac_s,
        load_s_per_f32: load_s / moved,
        store_s_per_f32: store_s / moved,
    })
}

/// Records one probe over `inv` invocations (`iters` trips for `mac`).
fn run(
    gpu: &Gpu,
    entry: &'static str,
    inv: usize,
    iters: usize,
    src: &Tensor,
    dst: &Tensor,
) -> Result<()> {
    let k = Kernel::new(OP, SRC, DType::F32, BINDINGS)
        .entry(entry)
        .define("LANE_VECS", format!("{LANE_VECS}u"));
    let params = Params {
        n: inv as u32,
        iters: iters as u32,
        a: 0.999,
        b: 0.001,
    };
    gpu.dispatch(
        &k,
        bytemuck::bytes_of(&params),
        &[src.bind(), dst.bind()],
        [inv.div_ceil(64) as u32, 1, 1],
        Cost::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rand_vec, test_gpu};

    /// The probes compute what they claim (so the driver cannot have dropped the work
    /// the timings stand for): each output against a CPU reference.
    #[test]
    fn probes_match_cpu_reference() {
        let Some(gpu) = test_gpu() else { return };
        let inv = 300; // not a multiple of the workgroup: the tail lanes repeat the last one
        let data = rand_vec(LANE_VECS * inv * 4, 7, -1.0, 1.0);
        let src = Tensor::from_f32(&gpu, &[data.len()], &data, DType::F32).unwrap();
        let out = Tensor::zeros(&gpu, &[LANE_VECS * inv * 4], DType::F32).unwrap();

        run(&gpu, "load", inv, 0, &src, &out).unwrap();
        let got = out.to_f32_vec().unwrap();
        for lane in [0, 1, 63, 64, 299] {
            for c in 0..4 {
                let want: f32 = (0..LANE_VECS).map(|i| data[(i * inv + lane) * 4 + c]).sum();
                let g = got[lane * 4 + c];
                assert!(
                    (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "load lane {lane}: {g} vs {want}"
                );
            }
        }

        run(&gpu, "store", inv, 0, &src, &out).unwrap();
        let got = out.to_f32_vec().unwrap();
        for lane in [0, 5, 299] {
            for i in [0, 7, LANE_VECS - 1] {
                let g = &got[(i * inv + lane) * 4..][..4];
                assert!(
                    g.iter().all(|&v| v == lane as f32 + i as f32),
                    "store {lane},{i}: {g:?}"
                );
            }
        }

        let iters = 3;
        for (entry, chains) in MAC_PROBES {
            run(&gpu, entry, inv, iters, &src, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            let steps = iters * 32 / chains;
            for lane in [0, 17, 299] {
                for c in 0..4 {
                    let start = [(lane % 16) as f32, 1.0, 2.0, 3.0][c];
                    let want: f32 = (0..chains)
                        .map(|j| {
                            let mut v = start + j as f32;
                            for _ in 0..steps {
                                v = v * 0.999 + 0.001;
                            }
                            v
                        })
                        .sum();
                    let g = got[lane * 4 + c];
                    assert!(
                        (g - want).abs() <= 1e-4 * want.abs(),
                        "{entry} lane {lane}: {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn measure_gives_finite_positive_figures() {
        let Some(gpu) = test_gpu() else { return };
        let r = measure(&gpu, 2).unwrap();
        assert!(r.macs_per_s.is_finite() && r.macs_per_s > 1e6, "{r:?}");
        assert!(
            r.load_s_per_f32.is_finite() && r.load_s_per_f32 > 0.0,
            "{r:?}"
        );
        assert!(
            r.store_s_per_f32.is_finite() && r.store_s_per_f32 > 0.0,
            "{r:?}"
        );
    }

    /// Hand-computed floors: 1 G multiply-add/s, loads 2 ns and stores 1 ns per f32.
    #[test]
    fn floor_adds_arithmetic_and_the_cheaper_memory_cost() {
        let r = Roofline {
            macs_per_s: 1e9,
            load_s_per_f32: 2e-9,
            store_s_per_f32: 1e-9,
        };
        // 2e9 flops = 1e9 multiply-adds = 1 s; 4e9 bytes = 1e9 f32 at 1 ns = 1 s.
        assert!((r.floor_s(Cost::new(2e9, 4e9)) - 2.0).abs() < 1e-12);
        assert_eq!(r.floor_s(Cost::default()), 0.0);
        let mut table = BTreeMap::new();
        let op = |ns, flops, bytes| OpProfile {
            calls: 1,
            total_ns: ns,
            flops,
            bytes,
        };
        table.insert("a", op(3e9, 2e9, 0.0));
        table.insert("b", op(5e8, 0.0, 8e8));
        let rows = r.floors(&table);
        let want = [("a", 3.0, 1.0), ("b", 0.5, 0.2), ("total", 3.5, 1.2)];
        assert_eq!(rows.len(), want.len());
        for ((op, t, f), (wop, wt, wf)) in rows.iter().zip(want) {
            assert_eq!(op, wop);
            assert!(
                (t - wt).abs() < 1e-9 && (f - wf).abs() < 1e-9,
                "{op}: {t} {f}"
            );
        }
    }
}
