//! Code generation for the wide register-blocked matmul (`matmul_wide.wgsl`), the
//! CPU-adapter kernel of [`super::matmul`]: the unrolled accumulators, loads, broadcasts and
//! stores for one (PX, CO, BVEC, vector-store) variant.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const SOURCE: &str = include_str!("matmul_wide.wgsl");

/// One variant of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Wide {
    /// Rows per lane.
    pub px: usize,
    /// Columns per lane (and per workgroup tile), a multiple of 32.
    pub co: usize,
    /// Workgroup size, a multiple of 8.
    pub wg: usize,
    /// B read as vectors: N contiguous (`sbn == 1`) and a multiple of 4.
    pub bvec: bool,
    /// Output written as vectors: N a multiple of 4.
    pub vec_out: bool,
}

impl Wide {
    /// The variant for an `m x n` product with B's column stride `sbn`.
    pub fn new(m: usize, n: usize, sbn: usize) -> Wide {
        let px = 8;
        // Narrow outputs: 32 columns so fewer lanes work on padding.
        let co = if n <= 32 { 32 } else { 64 };
        // Fewer rows than 64 lanes x 8: a smaller workgroup (whole subgroups) so the work
        // still spreads over several workgroups.
        let wg = m.div_ceil(px).next_multiple_of(8).clamp(8, 64);
        Wide {
            px,
            co,
            wg,
            bvec: sbn == 1 && n.is_multiple_of(4),
            vec_out: n.is_multiple_of(4),
        }
    }

    /// Output tile of one workgroup (rows, cols).
    pub fn tile(&self) -> (usize, usize) {
        (self.wg * self.px, self.co)
    }

    /// The kernel source, generated once per variant (pipelines need `'static` source).
    pub fn source(&self) -> &'static str {
        static CACHE: OnceLock<Mutex<HashMap<Wide, &'static str>>> = OnceLock::new();
        let mut cache = CACHE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        cache
            .entry(*self)
            .or_insert_with(|| Box::leak(self.generate().into_boxed_str()))
    }

    fn generate(&self) -> String {
        let (px, co4) = (self.px, self.co / 4);
        let mut offsets = String::new();
        for j in 0..px {
            offsets += &format!("    let ra{j} = a0 + min(row0 + {j}u, ml) * p.sam;\n");
        }
        let mut body = String::new();
        for j in 0..px {
            body += &format!("        let x{j} = vec4<f32>(f32(a[ra{j} + ka]));\n");
        }
        if self.bvec {
            // Lane l holds column vectors l, l + 8, ...: vector c is register c / 8 of
            // lane c % 8.
            for r in 0..co4.div_ceil(8) {
                offsets += &format!(
                    "    let cb{r} = (b0 + min(n0 + ({r}u * 8u + lane) * 4u, nl - 3u)) / 4u;\n"
                );
                body += &format!("        let bl{r} = vec4<f32>(b4[cb{r} + kb / 4u]);\n");
            }
            for c in 0..co4 {
                body += &format!(
                    "        let w{c} = subgroupBroadcast(bl{}, {}u);\n",
                    c / 8,
                    c % 8
                );
            }
        } else {
            // Lane l holds columns l, l + 8, ...: column 8r + l is register r of lane l.
            for r in 0..self.co / 8 {
                offsets +=
                    &format!("    let cb{r} = b0 + min(n0 + {r}u * 8u + lane, nl) * p.sbn;\n");
                body += &format!("        let bl{r} = f32(b[cb{r} + kb]);\n");
            }
            for c in 0..co4 {
                let comps: Vec<String> = (0..4)
                    .map(|q| {
                        let col = 4 * c + q;
                        format!("subgroupBroadcast(bl{}, {}u)", col / 8, col % 8)
                    })
                    .collect();
                body += &format!("        let w{c} = vec4<f32>({});\n", comps.join(", "));
            }
        }
        let mut acc = String::new();
        let mut store = String::new();
        for j in 0..px {
            for c in 0..co4 {
                acc += &format!("    var c{j}_{c} = vec4<f32>(0.0);\n");
                body += &format!("        c{j}_{c} = fma(x{j}, w{c}, c{j}_{c});\n");
                store += &format!(
                    "    store_wide(tile.x, row0 + {j}u, n0 + {}u, c{j}_{c});\n",
                    4 * c
                );
            }
        }
        SOURCE
            .replace("//@STORE_FN\n", self.store_fn())
            .replace("//@OFFSETS\n", &offsets)
            .replace("//@ACC\n", &acc)
            .replace("//@BODY\n", &body)
            .replace("//@STORE\n", &store)
    }

    /// `store_wide(bi, row, col, acc)`: columns col..col+3 of a row through the epilogue.
    fn store_fn(&self) -> &'static str {
        if self.vec_out {
            // N % 4 == 0, so the four columns are all in range or all out.
            "fn store_wide(bi: u32, row: u32, col: u32, acc: vec4<f32>) {
    if row >= p.m || col >= p.n { return; }
    let o = ((bi * p.m + row) * p.n + col) / 4u;
    var v = acc;
    if HAS_BIAS { v += vec4<f32>(bias4[col / 4u]); }
    var s = vec4<f32>(p.slope);
    if ACT == 3u {
        if p.slope_n == 1u {
            s = vec4<f32>(f32(slopes[0]));
        } else {
            s = vec4<f32>(f32(slopes[col]), f32(slopes[col + 1u]), f32(slopes[col + 2u]),
                          f32(slopes[col + 3u]));
        }
    }
    v = p.alpha * vec4<f32>(activate(v.x, s.x), activate(v.y, s.y), activate(v.z, s.z),
                            activate(v.w, s.w));
    if HAS_RES { v += p.beta * vec4<f32>(res4[o]); }
    out4[o] = T4(v);
}
"
        } else {
            "fn store_wide(bi: u32, row: u32, col: u32, acc: vec4<f32>) {
    if row >= p.m { return; }
    if col < p.n { store_out(bi, row, col, acc.x); }
    if col + 1u < p.n { store_out(bi, row, col + 1u, acc.y); }
    if col + 2u < p.n { store_out(bi, row, col + 2u, acc.z); }
    if col + 3u < p.n { store_out(bi, row, col + 3u, acc.w); }
}
"
        }
    }
}
