//! Architecture detection from tensor names and shapes, so any community
//! checkpoint with a known layout works without a manifest.

use std::collections::BTreeMap;

use super::manifest::Normalisation;
use crate::weights::Weights;

/// A recognised architecture and the hyper-parameters read off its tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchInfo {
    /// basicsr `RRDBNet` (ESRGAN / Real-ESRGAN x4plus, x2plus, anime_6B).
    RrdbNet(RrdbNetInfo),
    /// Real-ESRGAN `SRVGGNetCompact` (realesr-animevideov3, realesr-general).
    SrvggCompact(SrvggInfo),
    /// IS-Net (DIS) salient object segmentation.
    IsNet(IsNetInfo),
    /// BiRefNet (Swin v1 backbone) dichotomous segmentation.
    BiRefNet(BiRefNetInfo),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiRefNetInfo {
    pub embed_dim: usize,
    /// Blocks per Swin stage.
    pub depths: Vec<usize>,
    pub window: usize,
}

impl BiRefNetInfo {
    /// The published backbone this width is (`swin_v1_t` for BiRefNet_lite,
    /// `swin_v1_l` for BiRefNet and BiRefNet_HR), or `custom`.
    pub fn backbone(&self) -> &'static str {
        match (self.embed_dim, self.depths.as_slice()) {
            (96, [2, 2, 6, 2]) => "swin_v1_t",
            (96, [2, 2, 18, 2]) => "swin_v1_s",
            (128, [2, 2, 18, 2]) => "swin_v1_b",
            (192, [2, 2, 18, 2]) => "swin_v1_l",
            _ => "custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrdbNetInfo {
    /// Channels into `conv_first` (after any pixel-unshuffle).
    pub conv_in_ch: usize,
    pub num_out_ch: usize,
    pub num_feat: usize,
    pub num_block: usize,
    pub num_grow_ch: usize,
    /// 4, 2 or 1 when `conv_in_ch` is `num_out_ch` times 1, 4 or 16 (basicsr
    /// pixel-unshuffles the input by 4/scale); `None` when that cannot tell,
    /// and then the manifest must say.
    pub scale: Option<u32>,
}

impl RrdbNetInfo {
    /// Pixel-unshuffle factor applied to the input for a given scale: the
    /// network itself always upsamples by 4.
    pub fn unshuffle_for(scale: u32) -> Option<u32> {
        match scale {
            4 => Some(1),
            2 => Some(2),
            1 => Some(4),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvggInfo {
    pub num_in_ch: usize,
    /// Output channels, assumed equal to the input channels (true of every
    /// released model): the last conv has `num_out_ch * upscale²` outputs.
    pub num_out_ch: usize,
    pub num_feat: usize,
    /// Convs between the first and the last (`num_conv` in basicsr).
    pub num_conv: usize,
    pub upscale: u32,
    /// PReLU activations (`body.{odd}.weight` slopes); `false` means a
    /// parameter-free activation (ReLU / LeakyReLU) that the weights cannot name.
    pub prelu: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsNetInfo {
    pub in_ch: usize,
    pub out_ch: usize,
}

impl ArchInfo {
    /// The name used in manifests (`architecture` field).
    pub fn name(&self) -> &'static str {
        match self {
            ArchInfo::RrdbNet(_) => "rrdbnet",
            ArchInfo::SrvggCompact(_) => "srvgg_compact",
            ArchInfo::IsNet(_) => "isnet",
            ArchInfo::BiRefNet(_) => "birefnet",
        }
    }

    /// Output size / input size, when the weights determine it.
    pub fn scale(&self) -> Option<u32> {
        match self {
            ArchInfo::RrdbNet(i) => i.scale,
            ArchInfo::SrvggCompact(i) => Some(i.upscale),
            ArchInfo::IsNet(_) | ArchInfo::BiRefNet(_) => Some(1),
        }
    }

    /// The input normalisation the published weights expect, when it is fixed
    /// by the architecture (written into imported models' manifests).
    pub fn normalisation(&self) -> Option<Normalisation> {
        match self {
            // torchvision's ImageNet statistics on pixels / 255.
            ArchInfo::BiRefNet(_) => Some(Normalisation::MeanStd {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for ArchInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchInfo::RrdbNet(i) => {
                write!(
                    f,
                    "RRDBNet (num_feat {}, num_block {}, num_grow_ch {}, in {}, out {}, ",
                    i.num_feat, i.num_block, i.num_grow_ch, i.conv_in_ch, i.num_out_ch
                )?;
                match i.scale {
                    Some(s) => write!(f, "x{s})"),
                    None => write!(f, "scale unknown)"),
                }
            }
            ArchInfo::SrvggCompact(i) => write!(
                f,
                "SRVGGNetCompact (num_feat {}, num_conv {}, x{}, {})",
                i.num_feat,
                i.num_conv,
                i.upscale,
                if i.prelu {
                    "PReLU"
                } else {
                    "parameter-free activation"
                }
            ),
            ArchInfo::IsNet(i) => write!(f, "IS-Net (in {}, out {})", i.in_ch, i.out_ch),
            ArchInfo::BiRefNet(i) => write!(
                f,
                "BiRefNet ({}: embed_dim {}, depths {:?}, window {})",
                i.backbone(),
                i.embed_dim,
                i.depths,
                i.window
            ),
        }
    }
}

/// Detects the architecture of a weights file.
pub fn detect(weights: &Weights) -> Option<ArchInfo> {
    let shapes: BTreeMap<String, Vec<usize>> = weights
        .index()
        .iter()
        .map(|(name, info)| (name.clone(), info.shape.clone()))
        .collect();
    detect_shapes(&shapes)
}

/// Detects the architecture from tensor names and shapes alone (the importer
/// uses this before any file exists).
pub fn detect_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Option<ArchInfo> {
    if shapes.contains_key("conv_first.weight") {
        return detect_rrdbnet(shapes).map(ArchInfo::RrdbNet);
    }
    if shapes.contains_key("conv_in.weight")
        && shapes.contains_key("stage1.rebnconvin.conv_s1.weight")
    {
        return detect_isnet(shapes).map(ArchInfo::IsNet);
    }
    if crate::models::birefnet::MARKER_TENSORS
        .iter()
        .all(|n| shapes.contains_key(*n))
    {
        return detect_birefnet(shapes).map(ArchInfo::BiRefNet);
    }
    if shapes.contains_key("body.0.weight") {
        return detect_srvgg(shapes).map(ArchInfo::SrvggCompact);
    }
    None
}

/// `[out, in, k, k]` of a conv weight with a square kernel.
fn conv(shapes: &BTreeMap<String, Vec<usize>>, name: &str) -> Option<(usize, usize, usize)> {
    match shapes.get(name)?.as_slice() {
        &[o, i, kh, kw] if kh == kw => Some((o, i, kh)),
        _ => None,
    }
}

/// Sorted distinct `N` of every `body.N.*` tensor; `None` unless they are 0..n.
fn body_indices(shapes: &BTreeMap<String, Vec<usize>>) -> Option<Vec<usize>> {
    let mut idx: Vec<usize> = shapes
        .keys()
        .filter_map(|k| k.strip_prefix("body.")?.split('.').next()?.parse().ok())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.iter().enumerate().all(|(i, &n)| i == n).then_some(idx)
}

fn detect_rrdbnet(shapes: &BTreeMap<String, Vec<usize>>) -> Option<RrdbNetInfo> {
    let (num_feat, conv_in_ch, _) = conv(shapes, "conv_first.weight")?;
    let (num_grow_ch, rdb_in, _) = conv(shapes, "body.0.rdb1.conv1.weight")?;
    let (num_out_ch, last_in, _) = conv(shapes, "conv_last.weight")?;
    if rdb_in != num_feat || last_in != num_feat {
        return None;
    }
    for name in [
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
    ] {
        if conv(shapes, name)? != (num_feat, num_feat, 3) {
            return None;
        }
    }
    let num_block = body_indices(shapes)?.len();
    // Every block must have the same RDB layout as block 0.
    for b in 0..num_block {
        for r in 1..=3 {
            for c in 1..=5 {
                let (o, i, _) = conv(shapes, &format!("body.{b}.rdb{r}.conv{c}.weight"))?;
                let expect_out = if c == 5 { num_feat } else { num_grow_ch };
                if o != expect_out || i != num_feat + (c - 1) * num_grow_ch {
                    return None;
                }
            }
        }
    }
    let scale = match conv_in_ch.checked_div(num_out_ch) {
        Some(1) if conv_in_ch == num_out_ch => Some(4),
        Some(4) if conv_in_ch == 4 * num_out_ch => Some(2),
        Some(16) if conv_in_ch == 16 * num_out_ch => Some(1),
        _ => None,
    };
    Some(RrdbNetInfo {
        conv_in_ch,
        num_out_ch,
        num_feat,
        num_block,
        num_grow_ch,
        scale,
    })
}

fn detect_srvgg(shapes: &BTreeMap<String, Vec<usize>>) -> Option<SrvggInfo> {
    let idx = body_indices(shapes)?;
    // Convs sit at even indices and activations at odd ones; the last module is a conv.
    let convs: Vec<(usize, usize, usize)> = idx
        .iter()
        .filter(|&&n| n % 2 == 0)
        .map(|n| conv(shapes, &format!("body.{n}.weight")))
        .collect::<Option<_>>()?;
    if convs.len() < 2 {
        return None;
    }
    let (num_feat, num_in_ch, _) = convs[0];
    let (last_out, last_in, _) = *convs.last()?;
    if last_in != num_feat
        || convs[1..convs.len() - 1]
            .iter()
            .any(|&c| c != (num_feat, num_feat, 3))
    {
        return None;
    }
    let slopes: Vec<&usize> = idx.iter().filter(|&&n| n % 2 == 1).collect();
    let prelu = !slopes.is_empty();
    if prelu {
        // One PReLU after every conv but the last, each with num_feat slopes.
        if slopes.len() != convs.len() - 1
            || slopes.iter().any(|n| {
                shapes.get(&format!("body.{n}.weight")).map(Vec::as_slice) != Some(&[num_feat])
            })
        {
            return None;
        }
    } else if *idx.last()? != 2 * (convs.len() - 1) {
        return None;
    }
    let sq = last_out.checked_div(num_in_ch)?;
    let upscale = (1..=8).find(|s| s * s == sq && sq * num_in_ch == last_out)?;
    Some(SrvggInfo {
        num_in_ch,
        num_out_ch: num_in_ch,
        num_feat,
        num_conv: convs.len() - 2,
        upscale: upscale as u32,
        prelu,
    })
}

fn detect_isnet(shapes: &BTreeMap<String, Vec<usize>>) -> Option<IsNetInfo> {
    let (_, in_ch, _) = conv(shapes, "conv_in.weight")?;
    let (out_ch, _, _) = conv(shapes, "side1.weight")?;
    Some(IsNetInfo { in_ch, out_ch })
}

fn detect_birefnet(shapes: &BTreeMap<String, Vec<usize>>) -> Option<BiRefNetInfo> {
    let (embed_dim, _, _) = conv(shapes, "bb.patch_embed.proj.weight")?;
    let rows = shapes.get("bb.layers.0.blocks.0.attn.relative_position_bias_table")?[0];
    let window = (1..=64).find(|w| (2 * w - 1) * (2 * w - 1) == rows)?;
    let depths: Vec<usize> = (0..4)
        .map(|l| {
            (0..)
                .take_while(|b| {
                    shapes.contains_key(&format!("bb.layers.{l}.blocks.{b}.attn.qkv.weight"))
                })
                .count()
        })
        .collect();
    if depths.contains(&0) || !shapes.contains_key("decoder.conv_out1.0.weight") {
        return None;
    }
    Some(BiRefNetInfo {
        embed_dim,
        depths,
        window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shared_dir;

    fn open(name: &str) -> Weights {
        Weights::open(&shared_dir().join("models").join(name)).expect("open shared weights")
    }

    #[test]
    fn detects_realesrgan_x4plus() {
        let info = detect(&open("realesrgan-x4plus.safetensors")).expect("detected");
        assert_eq!(
            info,
            ArchInfo::RrdbNet(RrdbNetInfo {
                conv_in_ch: 3,
                num_out_ch: 3,
                num_feat: 64,
                num_block: 23,
                num_grow_ch: 32,
                scale: Some(4)
            })
        );
    }

    #[test]
    fn detects_animevideov3() {
        let info = detect(&open("realesr-animevideov3-x4.safetensors")).expect("detected");
        assert_eq!(
            info,
            ArchInfo::SrvggCompact(SrvggInfo {
                num_in_ch: 3,
                num_out_ch: 3,
                num_feat: 64,
                num_conv: 16,
                upscale: 4,
                prelu: true
            })
        );
    }

    #[test]
    fn detects_birefnet_variants() {
        let swin = |embed: usize, depths: &[usize], window: usize| {
            let mut s = BTreeMap::new();
            s.insert(
                "bb.patch_embed.proj.weight".to_string(),
                vec![embed, 3, 4, 4],
            );
            for (l, &d) in depths.iter().enumerate() {
                for b in 0..d {
                    let p = format!("bb.layers.{l}.blocks.{b}.attn");
                    let c = embed << l;
                    s.insert(format!("{p}.qkv.weight"), vec![3 * c, c]);
                    s.insert(
                        format!("{p}.relative_position_bias_table"),
                        vec![(2 * window - 1).pow(2), 3 << l],
                    );
                }
            }
            s.insert(
                "squeeze_module.0.conv_in.weight".to_string(),
                vec![64, 1, 3, 3],
            );
            s.insert("decoder.conv_out1.0.weight".to_string(), vec![1, 1, 1, 1]);
            detect_shapes(&s)
        };
        let name = |a: Option<ArchInfo>| match a {
            Some(ArchInfo::BiRefNet(i)) => (i.backbone(), i.window),
            other => panic!("not BiRefNet: {other:?}"),
        };
        assert_eq!(name(swin(192, &[2, 2, 18, 2], 12)), ("swin_v1_l", 12));
        assert_eq!(name(swin(96, &[2, 2, 6, 2], 7)), ("swin_v1_t", 7));
        assert_eq!(name(swin(8, &[2, 2, 2, 2], 7)), ("custom", 7));
        assert_eq!(swin(96, &[2, 2, 0, 2], 7), None, "a stage without blocks");
    }

    #[test]
    fn detects_isnet() {
        let info = detect(&open("isnet-dis.safetensors")).expect("detected");
        assert_eq!(
            info,
            ArchInfo::IsNet(IsNetInfo {
                in_ch: 3,
                out_ch: 1
            })
        );
    }

    /// Synthetic RRDBNet layouts: block count, x2 / x1 pixel-unshuffle input.
    fn rrdb_shapes(num_block: usize, conv_in_ch: usize) -> BTreeMap<String, Vec<usize>> {
        let (f, g) = (64, 32);
        let mut s = BTreeMap::new();
        s.insert("conv_first.weight".to_string(), vec![f, conv_in_ch, 3, 3]);
        for b in 0..num_block {
            for r in 1..=3 {
                for c in 1..=5 {
                    let o = if c == 5 { f } else { g };
                    s.insert(
                        format!("body.{b}.rdb{r}.conv{c}.weight"),
                        vec![o, f + (c - 1) * g, 3, 3],
                    );
                }
            }
        }
        for n in ["conv_body", "conv_up1", "conv_up2", "conv_hr"] {
            s.insert(format!("{n}.weight"), vec![f, f, 3, 3]);
        }
        s.insert("conv_last.weight".to_string(), vec![3, f, 3, 3]);
        s
    }

    #[test]
    fn rrdbnet_block_count_and_unshuffle_scale() {
        let scale_of = |s: &BTreeMap<String, Vec<usize>>| match detect_shapes(s) {
            Some(ArchInfo::RrdbNet(i)) => (i.num_block, i.scale),
            other => panic!("not RRDBNet: {other:?}"),
        };
        assert_eq!(scale_of(&rrdb_shapes(6, 3)), (6, Some(4)));
        assert_eq!(scale_of(&rrdb_shapes(2, 12)), (2, Some(2)));
        assert_eq!(scale_of(&rrdb_shapes(2, 48)), (2, Some(1)));
        assert_eq!(scale_of(&rrdb_shapes(2, 5)), (2, None));
    }

    #[test]
    fn inconsistent_layouts_are_not_detected() {
        let mut s = rrdb_shapes(3, 3);
        s.remove("body.1.rdb2.conv4.weight");
        assert_eq!(detect_shapes(&s), None, "missing conv in block 1");
        let mut s = rrdb_shapes(3, 3);
        s.insert("body.1.rdb2.conv4.weight".into(), vec![32, 99, 3, 3]);
        assert_eq!(detect_shapes(&s), None, "wrong input channels");
        let mut s = rrdb_shapes(3, 3);
        s.remove("body.1.rdb1.conv1.weight");
        s.retain(|k, _| !k.starts_with("body.1."));
        assert_eq!(detect_shapes(&s), None, "gap in block numbering");
        let s: BTreeMap<String, Vec<usize>> = [("foo.weight".to_string(), vec![1])].into();
        assert_eq!(detect_shapes(&s), None);
    }
}
