//! BiRefNet's convolutional blocks: convs with their eval-mode BatchNorm
//! folded in, the deformable conv (`DeformableConv2d`: offsets and a
//! `2 * sigmoid` modulation predicted by plain convs, then DCNv2 sampling),
//! `ASPPDeformable`, `BasicDecBlk`, `BasicLatBlk` and `SimpleConvs`.

use easel_kernels::ops::binary::add;
use easel_kernels::ops::conv2d::{Conv2d, Conv2dConfig};
use easel_kernels::ops::deform_conv2d::{DeformConv2dConfig, deform_conv2d};
use easel_kernels::ops::reduce::mean;
use easel_kernels::ops::unary::relu;
use easel_kernels::{Activation, DType, Epilogue, Gpu, Tensor};

use super::BiRefNetError;
use super::config::{AsppConfig, DecBlkConfig};
use crate::models::rsu::rsu::{BN_EPS, fold_batch_norm};
use crate::weights::Weights;

/// `{p}.weight [cout, cin, k, k]` and `{p}.bias` (zeros when the conv has
/// none), with the BatchNorm at `bn` folded in when given.
pub(super) fn conv_params(
    w: &Weights,
    p: &str,
    (cin, cout, k): (usize, usize, usize),
    bn: Option<&str>,
) -> Result<(Vec<f32>, Vec<f32>), BiRefNetError> {
    let mut weight = w.f32_checked(&format!("{p}.weight"), &[cout, cin, k, k])?;
    let bname = format!("{p}.bias");
    let mut bias = if w.contains(&bname) {
        w.f32_checked(&bname, &[cout])?
    } else {
        vec![0.0; cout]
    };
    if let Some(bn) = bn {
        let get = |n: &str| w.f32_checked(&format!("{bn}.{n}"), &[cout]);
        fold_batch_norm(
            &mut weight,
            &mut bias,
            &get("weight")?,
            &get("bias")?,
            &get("running_mean")?,
            &get("running_var")?,
            BN_EPS,
        );
    }
    Ok((weight, bias))
}

/// A conv (optionally BatchNorm-folded) with a fixed activation.
#[derive(Debug, Clone)]
pub(super) struct ConvAct {
    conv: Conv2d,
    act: Activation,
}

impl ConvAct {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        shape: (usize, usize, usize),
        bn: Option<&str>,
        act: Activation,
        dtype: DType,
    ) -> Result<ConvAct, BiRefNetError> {
        let (cin, cout, k) = shape;
        let (weight, bias) = conv_params(w, p, shape, bn)?;
        let wt = Tensor::from_f32(gpu, &[cout, cin, k, k], &weight, dtype)?;
        let bt = Tensor::from_f32(gpu, &[cout], &bias, dtype)?;
        let conv = Conv2d::new(&wt, Some(&bt), Conv2dConfig::padded(k / 2))?;
        Ok(ConvAct { conv, act })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        Ok(self.conv.forward(x, &Epilogue::act(self.act))?)
    }
}

/// `_ASPPModuleDeformable`: `relu(bn(DeformableConv2d(x)))`, the BatchNorm
/// folded into the regular conv's weights (the sampling is linear in them).
#[derive(Debug, Clone)]
struct DeformBranch {
    offset: Conv2d,
    modulator: Conv2d,
    weight: Tensor,
    bias: Tensor,
    cfg: DeformConv2dConfig,
}

impl DeformBranch {
    fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        (cin, cout, k): (usize, usize, usize),
        dtype: DType,
    ) -> Result<DeformBranch, BiRefNetError> {
        let conv = |name: &str, co: usize| -> Result<Conv2d, BiRefNetError> {
            let (wt, b) = conv_params(w, &format!("{p}.atrous_conv.{name}"), (cin, co, k), None)?;
            let wt = Tensor::from_f32(gpu, &[co, cin, k, k], &wt, dtype)?;
            let b = Tensor::from_f32(gpu, &[co], &b, dtype)?;
            Ok(Conv2d::new(&wt, Some(&b), Conv2dConfig::padded(k / 2))?)
        };
        let offset = conv("offset_conv", 2 * k * k)?;
        let modulator = conv("modulator_conv", k * k)?;
        let (weight, bias) = conv_params(
            w,
            &format!("{p}.atrous_conv.regular_conv"),
            (cin, cout, k),
            Some(&format!("{p}.bn")),
        )?;
        Ok(DeformBranch {
            offset,
            modulator,
            weight: Tensor::from_f32(gpu, &[cout, cin, k, k], &weight, dtype)?,
            bias: Tensor::from_f32(gpu, &[cout], &bias, dtype)?,
            cfg: DeformConv2dConfig {
                padding: (k / 2, k / 2),
                ..DeformConv2dConfig::default()
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let offset = self.offset.forward(x, &Epilogue::default())?;
        // modulator = 2 * sigmoid(conv(x)).
        let m = self.modulator.forward(
            x,
            &Epilogue {
                alpha: 2.0,
                ..Epilogue::act(Activation::Sigmoid)
            },
        )?;
        let y = deform_conv2d(
            x,
            &offset,
            Some(&m),
            &self.weight,
            Some(&self.bias),
            &self.cfg,
        )?;
        Ok(relu(&y)?)
    }
}

/// `ASPPDeformable`. The fuse conv (`conv1` + `bn1` + ReLU over the
/// concatenated branches) runs as one 1x1 conv per branch accumulated through
/// the residual epilogue, so the concatenation (3 x 256 channels at a quarter
/// of the input size: 200 MB at 1024² in f32) is never stored; the
/// global-pool branch is constant over the map, so its share is a
/// per-channel bias.
#[derive(Debug, Clone)]
pub(super) struct AsppDeformable {
    aspp1: DeformBranch,
    deforms: Vec<DeformBranch>,
    pool_conv: ConvAct,
    /// Fuse weights for aspp1, aspp_deforms.*, then the pooled branch (the
    /// last one carries the folded bias).
    fuse: Vec<Conv2d>,
}

impl AsppDeformable {
    fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        cfg: &AsppConfig,
        dtype: DType,
    ) -> Result<AsppDeformable, BiRefNetError> {
        let (c, b) = (cfg.in_ch, cfg.branch_ch);
        let aspp1 = DeformBranch::load(gpu, w, &format!("{p}.aspp1"), (c, b, 1), dtype)?;
        let deforms = (0..cfg.parallel)
            .map(|i| DeformBranch::load(gpu, w, &format!("{p}.aspp_deforms.{i}"), (c, b, 3), dtype))
            .collect::<Result<Vec<_>, _>>()?;
        let pool_bn = format!("{p}.global_avg_pool.2");
        let pool_conv = ConvAct::load(
            gpu,
            w,
            &format!("{p}.global_avg_pool.1"),
            (c, b, 1),
            cfg.pool_bn.then_some(pool_bn.as_str()),
            Activation::Relu,
            dtype,
        )?;
        let parts = 2 + cfg.parallel;
        let (weight, bias) = conv_params(
            w,
            &format!("{p}.conv1"),
            (b * parts, c, 1),
            Some(&format!("{p}.bn1")),
        )?;
        let fuse = (0..parts)
            .map(|k| {
                let block: Vec<f32> = (0..c)
                    .flat_map(|o| &weight[o * b * parts + k * b..o * b * parts + (k + 1) * b])
                    .copied()
                    .collect();
                let wt = Tensor::from_f32(gpu, &[c, b, 1, 1], &block, dtype)?;
                let bt = (k + 1 == parts)
                    .then(|| Tensor::from_f32(gpu, &[c], &bias, dtype))
                    .transpose()?;
                Ok(Conv2d::new(&wt, bt.as_ref(), Conv2dConfig::default())?)
            })
            .collect::<Result<Vec<_>, BiRefNetError>>()?;
        Ok(AsppDeformable {
            aspp1,
            deforms,
            pool_conv,
            fuse,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let mut y = self.fuse[0].forward(&self.aspp1.forward(x)?, &Epilogue::default())?;
        for (d, f) in self.deforms.iter().zip(&self.fuse[1..]) {
            let t = d.forward(x)?;
            y = f.forward(&t, &Epilogue::default().residual(&y, 1.0, 1.0))?;
        }
        // Upsampling a 1x1 map (align_corners) is a broadcast.
        let pooled = self.pool_conv.forward(&mean(x, &[2, 3], true)?)?;
        let last = self.fuse.last().expect("at least two fuse parts");
        let shift = last.forward(&pooled, &Epilogue::default())?;
        Ok(relu(&add(&y, &shift)?)?)
    }
}

/// `BasicDecBlk`.
#[derive(Debug, Clone)]
pub(super) struct BasicDecBlk {
    conv_in: ConvAct,
    att: Option<AsppDeformable>,
    conv_out: ConvAct,
}

impl BasicDecBlk {
    pub(super) fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        cfg: &DecBlkConfig,
        dtype: DType,
    ) -> Result<BasicDecBlk, BiRefNetError> {
        let conv_in = ConvAct::load(
            gpu,
            w,
            &format!("{p}.conv_in"),
            (cfg.in_ch, cfg.inter_ch, 3),
            Some(&format!("{p}.bn_in")),
            Activation::Relu,
            dtype,
        )?;
        let att = cfg
            .aspp
            .as_ref()
            .map(|a| AsppDeformable::load(gpu, w, &format!("{p}.dec_att"), a, dtype))
            .transpose()?;
        let conv_out = ConvAct::load(
            gpu,
            w,
            &format!("{p}.conv_out"),
            (cfg.inter_ch, cfg.out_ch, 3),
            Some(&format!("{p}.bn_out")),
            Activation::None,
            dtype,
        )?;
        Ok(BasicDecBlk {
            conv_in,
            att,
            conv_out,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        let mut t = self.conv_in.forward(x)?;
        if let Some(a) = &self.att {
            t = a.forward(&t)?;
        }
        self.conv_out.forward(&t)
    }
}

/// `SimpleConvs`: two 3x3 convs, no activation (the image-patch branch).
#[derive(Debug, Clone)]
pub(super) struct SimpleConvs {
    conv1: ConvAct,
    conv_out: ConvAct,
}

impl SimpleConvs {
    pub(super) fn load(
        gpu: &Gpu,
        w: &Weights,
        p: &str,
        (cin, inter, cout): (usize, usize, usize),
        dtype: DType,
    ) -> Result<SimpleConvs, BiRefNetError> {
        Ok(SimpleConvs {
            conv1: ConvAct::load(
                gpu,
                w,
                &format!("{p}.conv1"),
                (cin, inter, 3),
                None,
                Activation::None,
                dtype,
            )?,
            conv_out: ConvAct::load(
                gpu,
                w,
                &format!("{p}.conv_out"),
                (inter, cout, 3),
                None,
                Activation::None,
                dtype,
            )?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, BiRefNetError> {
        self.conv_out.forward(&self.conv1.forward(x)?)
    }
}
