//! BiRefNet hyper-parameters, read off a checkpoint's tensor shapes so every
//! published width (Swin-L general / HR, Swin-T lite) and the tiny test
//! configuration load through the same code.

use super::BiRefNetError;
use crate::weights::Weights;

/// One Swin stage (`bb.layers.N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageConfig {
    /// Token width `C` of the stage.
    pub dim: usize,
    /// Number of `SwinTransformerBlock`s; odd ones use shifted windows.
    pub depth: usize,
    pub heads: usize,
    /// MLP hidden width (`mlp_ratio * dim`).
    pub mlp_hidden: usize,
}

/// The Swin v1 backbone (`bb.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwinConfig {
    pub in_ch: usize,
    pub patch_size: usize,
    pub embed_dim: usize,
    pub window: usize,
    pub stages: Vec<StageConfig>,
}

impl SwinConfig {
    /// Output widths of the four stages.
    pub fn dims(&self) -> Vec<usize> {
        self.stages.iter().map(|s| s.dim).collect()
    }
}

/// One `BasicDecBlk`: conv_in (3x3) -> BN -> ReLU -> [ASPPDeformable] ->
/// conv_out (3x3) -> BN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecBlkConfig {
    pub in_ch: usize,
    pub inter_ch: usize,
    pub out_ch: usize,
    pub aspp: Option<AsppConfig>,
}

/// `ASPPDeformable`: a 1x1 deformable branch, `parallel` 3x3 deformable
/// branches, a global-pool branch, then a 1x1 fuse conv back to `in_ch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsppConfig {
    pub in_ch: usize,
    /// Width of every branch (256 in the published models).
    pub branch_ch: usize,
    pub parallel: usize,
    /// Whether the global-pool branch has a BatchNorm (`batch_size > 1` at
    /// training time, true of the published checkpoints).
    pub pool_bn: bool,
}

/// The image-patch branch (`dec_ipt`): `SimpleConvs` per decoder stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecIptConfig {
    /// Patches folded into channels (`dec_ipt_split`): the image is cut into
    /// a grid matching the feature map and stacked channel-wise.
    pub split: bool,
    /// `SimpleConvs` inner width (64 published).
    pub inter_ch: usize,
    /// Output widths of `ipt_blk5, ipt_blk4, ipt_blk3, ipt_blk2, ipt_blk1`.
    pub out_ch: [usize; 5],
}

/// The whole network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiRefNetConfig {
    pub swin: SwinConfig,
    /// `lateral_channels_in_collection`: decoder widths from the top
    /// (2x the backbone widths, reversed: `mul_scl_ipt='cat'`).
    pub channels: [usize; 4],
    /// How many of the lower stages are concatenated into the top feature
    /// (`cxt_num`, 3 published).
    pub cxt_num: usize,
    pub squeeze: Vec<DecBlkConfig>,
    /// `decoder_block4..1`.
    pub dec_blocks: [DecBlkConfig; 4],
    pub dec_ipt: Option<DecIptConfig>,
    /// Gradient-attention branch (`out_ref`): width of `gdt_convs_*`, and
    /// whether they carry a BatchNorm.
    pub out_ref: Option<(usize, bool)>,
}

/// A published variant, for names and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwinVariant {
    Tiny,
    Small,
    Base,
    Large,
    /// Any other width (test configurations).
    Custom,
}

impl BiRefNetConfig {
    pub fn variant(&self) -> SwinVariant {
        let depths: Vec<usize> = self.swin.stages.iter().map(|s| s.depth).collect();
        match (self.swin.embed_dim, depths.as_slice()) {
            (96, [2, 2, 6, 2]) => SwinVariant::Tiny,
            (96, [2, 2, 18, 2]) => SwinVariant::Small,
            (128, [2, 2, 18, 2]) => SwinVariant::Base,
            (192, [2, 2, 18, 2]) => SwinVariant::Large,
            _ => SwinVariant::Custom,
        }
    }

    /// Reads the configuration from the tensor shapes of a checkpoint.
    pub fn from_weights(w: &Weights) -> Result<BiRefNetConfig, BiRefNetError> {
        let swin = swin_from_weights(w)?;
        let dims = swin.dims();
        let lat = |i: usize| -> Result<usize, BiRefNetError> {
            let s = w.shape(&format!("decoder.lateral_block{i}.conv.weight"))?;
            Ok(s[0])
        };
        let channels = [2 * dims[3], 2 * dims[2], 2 * dims[1], 2 * dims[0]];
        // Only the published `mul_scl_ipt='cat'` layout: the laterals see
        // twice the backbone widths.
        for (i, want) in [(4, channels[1]), (3, channels[2]), (2, channels[3])] {
            let got = lat(i)?;
            if got != want {
                return Err(cfg_err(format!(
                    "decoder.lateral_block{i} has {got} channels; with mul_scl_ipt='cat' \
                     (the only supported layout) it takes {want}"
                )));
            }
        }
        let mut squeeze = Vec::new();
        while w.contains(&format!("squeeze_module.{}.conv_in.weight", squeeze.len())) {
            squeeze.push(dec_blk(w, &format!("squeeze_module.{}", squeeze.len()))?);
        }
        let top_in = squeeze.first().map(|b| b.in_ch).unwrap_or(channels[0]);
        let lower = [channels[3], channels[2], channels[1]];
        let cxt_num = (0..=3)
            .find(|&n| channels[0] + lower[3 - n..].iter().sum::<usize>() == top_in)
            .ok_or_else(|| {
                cfg_err(format!(
                    "squeeze_module.0 takes {top_in} channels, which no context concatenation \
                     of the backbone widths {dims:?} gives"
                ))
            })?;
        if squeeze.iter().any(|b| b.out_ch != channels[0])
            || squeeze.iter().skip(1).any(|b| b.in_ch != channels[0])
        {
            return Err(cfg_err(format!(
                "squeeze blocks must map to {} channels",
                channels[0]
            )));
        }
        let dec_ipt = if w.contains("decoder.ipt_blk5.conv1.weight") {
            let s = w.shape("decoder.ipt_blk5.conv1.weight")?;
            let split = match s[1] {
                3 => false,
                3072 => true,
                c => {
                    return Err(cfg_err(format!(
                        "decoder.ipt_blk5 takes {c} channels (3, or 3072 with dec_ipt_split)"
                    )));
                }
            };
            let mut out_ch = [0; 5];
            for (o, i) in out_ch.iter_mut().zip([5, 4, 3, 2, 1]) {
                *o = w.shape(&format!("decoder.ipt_blk{i}.conv_out.weight"))?[0];
            }
            Some(DecIptConfig {
                split,
                inter_ch: s[0],
                out_ch,
            })
        } else {
            None
        };
        let blk = |i: usize| dec_blk(w, &format!("decoder.decoder_block{i}"));
        let dec_blocks = [blk(4)?, blk(3)?, blk(2)?, blk(1)?];
        let ipt = |k: usize| dec_ipt.as_ref().map_or(0, |d| d.out_ch[k]);
        let want_in = [
            channels[0] + ipt(0),
            channels[1] + ipt(1),
            channels[2] + ipt(2),
            channels[3] + ipt(3),
        ];
        let want_out = [channels[1], channels[2], channels[3], channels[3] / 2];
        for (k, b) in dec_blocks.iter().enumerate() {
            if b.in_ch != want_in[k] || b.out_ch != want_out[k] {
                return Err(cfg_err(format!(
                    "decoder.decoder_block{} is {}->{}, expected {}->{}",
                    4 - k,
                    b.in_ch,
                    b.out_ch,
                    want_in[k],
                    want_out[k]
                )));
            }
        }
        let out_ref = if w.contains("decoder.gdt_convs_4.0.weight") {
            let n = w.shape("decoder.gdt_convs_4.0.weight")?[0];
            Some((n, w.contains("decoder.gdt_convs_4.1.weight")))
        } else {
            None
        };
        Ok(BiRefNetConfig {
            swin,
            channels,
            cxt_num,
            squeeze,
            dec_blocks,
            dec_ipt,
            out_ref,
        })
    }
}

pub(super) fn cfg_err(msg: String) -> BiRefNetError {
    BiRefNetError::Config(msg)
}

fn swin_from_weights(w: &Weights) -> Result<SwinConfig, BiRefNetError> {
    let pe = w.shape("bb.patch_embed.proj.weight")?;
    if pe.len() != 4 || pe[2] != pe[3] {
        return Err(cfg_err(format!(
            "bb.patch_embed.proj.weight {pe:?} is not a square conv"
        )));
    }
    let (embed_dim, in_ch, patch_size) = (pe[0], pe[1], pe[2]);
    let mut stages = Vec::new();
    let mut window = None;
    while w.contains(&format!(
        "bb.layers.{}.blocks.0.attn.qkv.weight",
        stages.len()
    )) {
        let l = stages.len();
        let mut depth = 0;
        while w.contains(&format!("bb.layers.{l}.blocks.{depth}.attn.qkv.weight")) {
            depth += 1;
        }
        let p = format!("bb.layers.{l}.blocks.0");
        let dim = w.shape(&format!("{p}.attn.qkv.weight"))?[1];
        let table = w.shape(&format!("{p}.attn.relative_position_bias_table"))?;
        let heads = table[1];
        // The table holds (2w-1)^2 rows.
        let side = (1..=64)
            .find(|s| (2 * s - 1) * (2 * s - 1) == table[0])
            .ok_or_else(|| {
                cfg_err(format!(
                    "{p}.attn.relative_position_bias_table has {} rows, not (2w-1)^2",
                    table[0]
                ))
            })?;
        if *window.get_or_insert(side) != side {
            return Err(cfg_err(format!(
                "stage {l} uses window {side}, earlier stages {window:?}"
            )));
        }
        if heads == 0 || dim % heads != 0 {
            return Err(cfg_err(format!("{p}: {dim} channels over {heads} heads")));
        }
        let mlp_hidden = w.shape(&format!("{p}.mlp.fc1.weight"))?[0];
        stages.push(StageConfig {
            dim,
            depth,
            heads,
            mlp_hidden,
        });
    }
    if stages.len() != 4 {
        return Err(cfg_err(format!(
            "the Swin backbone has {} stages (bb.layers.*), BiRefNet uses 4",
            stages.len()
        )));
    }
    if stages[0].dim != embed_dim || stages.windows(2).any(|p| p[1].dim != 2 * p[0].dim) {
        return Err(cfg_err(format!(
            "Swin stage widths {:?} do not double from the embedding width {embed_dim}",
            stages.iter().map(|s| s.dim).collect::<Vec<_>>()
        )));
    }
    Ok(SwinConfig {
        in_ch,
        patch_size,
        embed_dim,
        window: window.unwrap_or(7),
        stages,
    })
}

fn dec_blk(w: &Weights, p: &str) -> Result<DecBlkConfig, BiRefNetError> {
    let conv_in = w.shape(&format!("{p}.conv_in.weight"))?;
    let conv_out = w.shape(&format!("{p}.conv_out.weight"))?;
    let (in_ch, inter_ch, out_ch) = (conv_in[1], conv_in[0], conv_out[0]);
    let aspp = if w.contains(&format!(
        "{p}.dec_att.aspp1.atrous_conv.regular_conv.weight"
    )) {
        let branch_ch = w.shape(&format!(
            "{p}.dec_att.aspp1.atrous_conv.regular_conv.weight"
        ))?[0];
        let mut parallel = 0;
        while w.contains(&format!(
            "{p}.dec_att.aspp_deforms.{parallel}.atrous_conv.regular_conv.weight"
        )) {
            parallel += 1;
        }
        Some(AsppConfig {
            in_ch: inter_ch,
            branch_ch,
            parallel,
            pool_bn: w.contains(&format!("{p}.dec_att.global_avg_pool.2.weight")),
        })
    } else if w.contains(&format!("{p}.dec_att.aspp1.atrous_conv.weight")) {
        return Err(cfg_err(format!(
            "{p}.dec_att is a plain ASPP; only ASPPDeformable (the published layout) is supported"
        )));
    } else {
        None
    };
    Ok(DecBlkConfig {
        in_ch,
        inter_ch,
        out_ch,
        aspp,
    })
}

impl BiRefNetConfig {
    /// The published layout for a Swin width: `Tiny` (BiRefNet_lite) or
    /// `Large` (BiRefNet, BiRefNet_HR); `None` for the others, which have
    /// no released BiRefNet checkpoints.
    pub fn published(variant: SwinVariant) -> Option<BiRefNetConfig> {
        let (embed, depths, heads, window) = match variant {
            SwinVariant::Tiny => (96, [2, 2, 6, 2], [3, 6, 12, 24], 7),
            SwinVariant::Large => (192, [2, 2, 18, 2], [6, 12, 24, 48], 12),
            _ => return None,
        };
        let stages = (0..4)
            .map(|l| StageConfig {
                dim: embed << l,
                depth: depths[l],
                heads: heads[l],
                mlp_hidden: 4 * (embed << l),
            })
            .collect();
        let ch = [16 * embed, 8 * embed, 4 * embed, 2 * embed];
        let aspp = AsppConfig {
            in_ch: 64,
            branch_ch: 256,
            parallel: 1,
            pool_bn: true,
        };
        let blk = |in_ch: usize, out_ch: usize| DecBlkConfig {
            in_ch,
            inter_ch: 64,
            out_ch,
            aspp: Some(aspp.clone()),
        };
        Some(BiRefNetConfig {
            swin: SwinConfig {
                in_ch: 3,
                patch_size: 4,
                embed_dim: embed,
                window,
                stages,
            },
            channels: ch,
            cxt_num: 3,
            squeeze: vec![blk(ch[0] + ch[1] + ch[2] + ch[3], ch[0])],
            dec_blocks: [
                blk(ch[0] + ch[0] / 8, ch[1]),
                blk(ch[1] + ch[0] / 8, ch[2]),
                blk(ch[2] + ch[1] / 8, ch[3]),
                blk(ch[3] + ch[2] / 8, ch[3] / 2),
            ],
            dec_ipt: Some(DecIptConfig {
                split: true,
                inter_ch: 64,
                out_ch: [ch[0] / 8, ch[0] / 8, ch[1] / 8, ch[2] / 8, ch[3] / 8],
            }),
            out_ref: Some((16, true)),
        })
    }

    /// Every tensor [`super::BiRefNet::load`] reads, with its shape, by the
    /// published names (for writing random checkpoints of a layout).
    pub fn tensor_shapes(&self) -> std::collections::BTreeMap<String, Vec<usize>> {
        let mut s = std::collections::BTreeMap::new();
        let mut put = |name: String, shape: Vec<usize>| {
            s.insert(name, shape);
        };
        let sw = &self.swin;
        let (e, p) = (sw.embed_dim, sw.patch_size);
        put("bb.patch_embed.proj.weight".into(), vec![e, sw.in_ch, p, p]);
        for n in [
            "bb.patch_embed.proj.bias",
            "bb.patch_embed.norm.weight",
            "bb.patch_embed.norm.bias",
        ] {
            put(n.into(), vec![e]);
        }
        let side = 2 * sw.window - 1;
        for (l, st) in sw.stages.iter().enumerate() {
            let c = st.dim;
            for b in 0..st.depth {
                let q = format!("bb.layers.{l}.blocks.{b}");
                for n in ["norm1", "norm2"] {
                    put(format!("{q}.{n}.weight"), vec![c]);
                    put(format!("{q}.{n}.bias"), vec![c]);
                }
                put(
                    format!("{q}.attn.relative_position_bias_table"),
                    vec![side * side, st.heads],
                );
                for (n, o, i) in [
                    ("attn.qkv", 3 * c, c),
                    ("attn.proj", c, c),
                    ("mlp.fc1", st.mlp_hidden, c),
                    ("mlp.fc2", c, st.mlp_hidden),
                ] {
                    put(format!("{q}.{n}.weight"), vec![o, i]);
                    put(format!("{q}.{n}.bias"), vec![o]);
                }
            }
            if l + 1 < sw.stages.len() {
                let q = format!("bb.layers.{l}.downsample");
                put(format!("{q}.norm.weight"), vec![4 * c]);
                put(format!("{q}.norm.bias"), vec![4 * c]);
                put(format!("{q}.reduction.weight"), vec![2 * c, 4 * c]);
            }
            put(format!("bb.norm{l}.weight"), vec![c]);
            put(format!("bb.norm{l}.bias"), vec![c]);
        }
        let mut conv = |q: &str, cin: usize, cout: usize, k: usize, bias: bool| {
            s.insert(format!("{q}.weight"), vec![cout, cin, k, k]);
            if bias {
                s.insert(format!("{q}.bias"), vec![cout]);
            }
        };
        let mut convs: Vec<(String, usize, usize, usize, bool)> = Vec::new();
        let mut bns: Vec<(String, usize)> = Vec::new();
        let mut blk = |q: &str, b: &DecBlkConfig| {
            convs.push((format!("{q}.conv_in"), b.in_ch, b.inter_ch, 3, true));
            bns.push((format!("{q}.bn_in"), b.inter_ch));
            convs.push((format!("{q}.conv_out"), b.inter_ch, b.out_ch, 3, true));
            bns.push((format!("{q}.bn_out"), b.out_ch));
            if let Some(a) = &b.aspp {
                let q = format!("{q}.dec_att");
                let branches = std::iter::once((format!("{q}.aspp1"), 1))
                    .chain((0..a.parallel).map(|i| (format!("{q}.aspp_deforms.{i}"), 3)));
                for (r, k) in branches {
                    let c = format!("{r}.atrous_conv");
                    convs.push((format!("{c}.offset_conv"), a.in_ch, 2 * k * k, k, true));
                    convs.push((format!("{c}.modulator_conv"), a.in_ch, k * k, k, true));
                    convs.push((format!("{c}.regular_conv"), a.in_ch, a.branch_ch, k, false));
                    bns.push((format!("{r}.bn"), a.branch_ch));
                }
                convs.push((
                    format!("{q}.global_avg_pool.1"),
                    a.in_ch,
                    a.branch_ch,
                    1,
                    false,
                ));
                if a.pool_bn {
                    bns.push((format!("{q}.global_avg_pool.2"), a.branch_ch));
                }
                convs.push((
                    format!("{q}.conv1"),
                    a.branch_ch * (2 + a.parallel),
                    a.in_ch,
                    1,
                    false,
                ));
                bns.push((format!("{q}.bn1"), a.in_ch));
            }
        };
        for (i, b) in self.squeeze.iter().enumerate() {
            blk(&format!("squeeze_module.{i}"), b);
        }
        for (k, b) in self.dec_blocks.iter().enumerate() {
            blk(&format!("decoder.decoder_block{}", 4 - k), b);
        }
        let ch = self.channels;
        if let Some(d) = &self.dec_ipt {
            for k in 0..5 {
                let cin = if d.split {
                    3 * [1024, 256, 64, 16, 1][k]
                } else {
                    3
                };
                let q = format!("decoder.ipt_blk{}", 5 - k);
                convs.push((format!("{q}.conv1"), cin, d.inter_ch, 3, true));
                convs.push((format!("{q}.conv_out"), d.inter_ch, d.out_ch[k], 3, true));
            }
        }
        for (i, c) in [(4, ch[1]), (3, ch[2]), (2, ch[3])] {
            convs.push((format!("decoder.lateral_block{i}.conv"), c, c, 1, true));
            if let Some((n, bn)) = self.out_ref {
                convs.push((format!("decoder.gdt_convs_{i}.0"), c, n, 3, true));
                if bn {
                    bns.push((format!("decoder.gdt_convs_{i}.1"), n));
                }
                convs.push((format!("decoder.gdt_convs_attn_{i}.0"), n, 1, 1, true));
            }
        }
        let last_in = ch[3] / 2 + self.dec_ipt.as_ref().map_or(0, |d| d.out_ch[4]);
        convs.push(("decoder.conv_out1.0".into(), last_in, 1, 1, true));
        for (q, cin, cout, k, bias) in convs {
            conv(&q, cin, cout, k, bias);
        }
        for (q, c) in bns {
            for n in ["weight", "bias", "running_mean", "running_var"] {
                s.insert(format!("{q}.{n}"), vec![c]);
            }
        }
        s
    }
}
