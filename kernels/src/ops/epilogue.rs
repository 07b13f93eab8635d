//! Activations and the fused epilogue shared by matmul, conv and the
//! element-wise kernels.
//!
//! Kernels that support an epilogue include `epilogue.wgsl` and compute, per
//! output element with channel `c`:
//!
//! `y = alpha * act(acc + bias[c]) + beta * residual`
//!
//! `act` is chosen at pipeline-build time through the `ACT` constant, so an
//! unused branch costs nothing.

use crate::Tensor;

/// Element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// `x if x >= 0 else slope * x`.
    LeakyRelu(f32),
    /// Per-channel slope from a tensor ([`Epilogue::slopes`]).
    PRelu,
    Silu,
    /// Exact GELU with erf.
    GeluErf,
    /// GELU with the tanh approximation.
    GeluTanh,
    Sigmoid,
    Tanh,
}

impl Activation {
    /// The `ACT` constant the WGSL side switches on.
    pub fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::LeakyRelu(_) => 2,
            Activation::PRelu => 3,
            Activation::Silu => 4,
            Activation::GeluErf => 5,
            Activation::GeluTanh => 6,
            Activation::Sigmoid => 7,
            Activation::Tanh => 8,
        }
    }

    /// The scalar parameter (leaky slope), 0 otherwise.
    pub fn param(self) -> f32 {
        match self {
            Activation::LeakyRelu(s) => s,
            _ => 0.0,
        }
    }

    /// CPU reference. `slope` is the PReLU slope for this element's channel.
    pub fn apply(self, x: f32, slope: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(s) => {
                if x >= 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Activation::PRelu => {
                if x >= 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluErf => {
                0.5 * x * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2) as f32)
            }
            Activation::GeluTanh => {
                let k = (2.0 / std::f64::consts::PI).sqrt() as f32;
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }
}

/// Double-precision erf for the CPU references (Abramowitz–Stegun 7.1.26 is
/// not accurate enough to be a reference; this uses the series/continued
/// fraction split).
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: converges fast for |x| < 2.5.
        let mut sum = ax;
        let mut term = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    if x < 0.0 { -r } else { r }
}

/// Optional fused operations after a matmul/conv accumulation.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub act: Activation,
    /// Per-channel slopes for [`Activation::PRelu`].
    pub slopes: Option<&'a Tensor>,
    /// Scale applied after the activation.
    pub alpha: f32,
    /// Tensor of the output's shape added after scaling.
    pub residual: Option<&'a Tensor>,
    /// Scale of the residual.
    pub beta: f32,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Self {
            act: Activation::None,
            slopes: None,
            alpha: 1.0,
            residual: None,
            beta: 1.0,
        }
    }
}

impl<'a> Epilogue<'a> {
    pub fn act(act: Activation) -> Self {
        Self {
            act,
            ..Self::default()
        }
    }
    pub fn prelu(slopes: &'a Tensor) -> Self {
        Self {
            act: Activation::PRelu,
            slopes: Some(slopes),
            ..Self::default()
        }
    }
    /// `alpha * act(x) + beta * residual`.
    pub fn residual(mut self, residual: &'a Tensor, alpha: f32, beta: f32) -> Self {
        self.residual = Some(residual);
        self.alpha = alpha;
        self.beta = beta;
        self
    }

    /// `const` lines for the shader prelude: `ACT`, `HAS_RES`.
    pub fn defines(&self, has_bias: bool) -> Vec<(&'static str, String)> {
        vec![
            ("ACT", format!("{}u", self.act.code())),
            ("HAS_BIAS", has_bias.to_string()),
            ("HAS_RES", self.residual.is_some().to_string()),
        ]
    }

    /// CPU reference of the epilogue for one element.
    pub fn apply(&self, acc: f32, bias: f32, slope: f32, residual: f32) -> f32 {
        let y = self.alpha * self.act.apply(acc + bias, slope);
        if self.residual.is_some() {
            y + self.beta * residual
        } else {
            y
        }
    }

    /// Checks the epilogue's tensors against the output: `slopes` of
    /// `channels` elements for PReLU, `residual` of the output's shape.
    pub fn validate(
        &self,
        op: &'static str,
        out_shape: &[usize],
        channels: usize,
    ) -> crate::Result<()> {
        if self.act == Activation::PRelu {
            match self.slopes {
                None => return crate::error::shape_err(op, "PReLU epilogue needs slopes"),
                Some(s) if s.numel() != channels && s.numel() != 1 => {
                    return crate::error::shape_err(
                        op,
                        format!(
                            "PReLU slopes have {} elements, expected {channels} or 1",
                            s.numel()
                        ),
                    );
                }
                _ => {}
            }
        }
        if let Some(r) = self.residual
            && r.shape() != out_shape
        {
            return crate::error::shape_err(
                op,
                format!(
                    "residual shape {:?} differs from the output shape {:?}",
                    r.shape(),
                    out_shape
                ),
            );
        }
        Ok(())
    }
}

/// WGSL for the epilogue; include it in a kernel's `includes`.
pub const EPILOGUE_WGSL: &str = include_str!("epilogue.wgsl");

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        // Values from tables of the error function.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!(
                (erf(x) - want).abs() < 1e-12,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }
}
