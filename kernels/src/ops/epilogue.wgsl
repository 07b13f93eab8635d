// Shared activation / epilogue code. Needs the prelude constants
// ACT (u32), HAS_BIAS (bool), HAS_RES (bool).
// ACT codes: 0 none, 1 relu, 2 leaky_relu(slope), 3 prelu(slope per channel),
// 4 silu, 5 gelu (erf), 6 gelu (tanh), 7 sigmoid, 8 tanh.

// erf with max abs error 1.2e-7 (Numerical Recipes erfc Chebyshev fit).
fn erf_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return select(r - 1.0, 1.0 - r, x >= 0.0);
}

fn tanh_safe(x: f32) -> f32 {
    // Some backends compute tanh via exp and overflow to NaN for large |x|.
    return tanh(clamp(x, -15.0, 15.0));
}

fn activate(x: f32, slope: f32) -> f32 {
    if ACT == 1u { return max(x, 0.0); }
    if ACT == 2u || ACT == 3u { return select(slope * x, x, x >= 0.0); }
    if ACT == 4u { return x / (1.0 + exp(-x)); }
    if ACT == 5u { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
    if ACT == 6u {
        return 0.5 * x * (1.0 + tanh_safe(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    }
    if ACT == 7u { return 1.0 / (1.0 + exp(-x)); }
    if ACT == 8u { return tanh_safe(x); }
    return x;
}
