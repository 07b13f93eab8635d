//! ncnn models (`.param` text graph + `.bin` weights), mapped onto the
//! PyTorch names of the architecture they were exported from. ncnn keeps
//! layers in topological order, which for SRVGGNetCompact and RRDBNet is the
//! order of the PyTorch modules, so weights can be named by position.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use safetensors::Dtype;

use super::{ImportError, ImportedTensor};
use crate::models::detect::{self, ArchInfo};

const PARAM_MAGIC: &str = "7767517";
const TAG_F16: u32 = 0x0130_6B47;
const TAG_INT8: u32 = 0x000D_4B38;
const TAG_F32_RAW: u32 = 0x0002_C056;

/// Layers that carry no weights in the `.bin` file.
const WEIGHTLESS: &[&str] = &[
    "Input",
    "Split",
    "PixelShuffle",
    "Interp",
    "BinaryOp",
    "Concat",
    "ReLU",
    "Eltwise",
    "Noop",
    "Crop",
    "Padding",
    "Sigmoid",
    "Clip",
    "TanH",
    "Dropout",
    "Reshape",
    "Permute",
    "Flatten",
    "Slice",
    "Pooling",
];

#[derive(Debug)]
struct Layer {
    kind: String,
    name: String,
    params: BTreeMap<i32, String>,
}

impl Layer {
    fn int(&self, key: i32, default: i64) -> Result<i64, String> {
        match self.params.get(&key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("layer {}: param {key}={v} is not an integer", self.name)),
        }
    }
}

/// One weight-bearing layer, in graph order.
enum Item {
    Conv {
        weight: ImportedTensor,
        bias: Option<ImportedTensor>,
        fused_act: bool,
    },
    PRelu(ImportedTensor),
    /// A parameter-free activation layer (it still takes a module index in
    /// SRVGGNetCompact's `body`).
    Act,
}

fn parse_param(text: &str) -> Result<Vec<Layer>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some(PARAM_MAGIC) {
        return Err(format!(
            "not an ncnn .param file (first line is not {PARAM_MAGIC})"
        ));
    }
    let counts: Vec<usize> = lines
        .next()
        .ok_or("missing layer/blob counts")?
        .split_whitespace()
        .map(|t| t.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| "bad layer/blob counts")?;
    let [layer_count, _blobs] = counts[..] else {
        return Err("bad layer/blob counts".into());
    };
    let mut layers = Vec::with_capacity(layer_count.min(1 << 16));
    for line in lines {
        let mut tok = line.split_whitespace();
        let (Some(kind), Some(name), Some(nb), Some(nt)) =
            (tok.next(), tok.next(), tok.next(), tok.next())
        else {
            return Err(format!("malformed layer line: {line}"));
        };
        let blobs = nb
            .parse::<usize>()
            .ok()
            .zip(nt.parse::<usize>().ok())
            .ok_or_else(|| format!("malformed layer line: {line}"))?;
        let mut tok = tok.skip(blobs.0 + blobs.1);
        let mut params = BTreeMap::new();
        for kv in tok.by_ref() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("layer {name}: malformed param {kv}"))?;
            let k: i32 = k
                .parse()
                .map_err(|_| format!("layer {name}: malformed param {kv}"))?;
            params.insert(k, v.to_string());
        }
        layers.push(Layer {
            kind: kind.to_string(),
            name: name.to_string(),
            params,
        });
    }
    if layers.len() != layer_count {
        return Err(format!(
            "header declares {layer_count} layers, file has {}",
            layers.len()
        ));
    }
    Ok(layers)
}

struct Bin<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bin<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!(".bin ends early while reading {what} (truncated?)"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Raw little-endian f32 (ncnn `load(w, 1)`), kept as f32.
    fn raw_f32(&mut self, n: usize, what: &str) -> Result<(Dtype, Vec<u8>), String> {
        Ok((Dtype::F32, self.take(n * 4, what)?.to_vec()))
    }

    /// Tagged weights (ncnn `load(w, 0)`): fp16 with tag 0x01306B47 (kept as
    /// f16, padded to 4 bytes) or raw fp32 with tag 0.
    fn tagged(&mut self, n: usize, what: &str) -> Result<(Dtype, Vec<u8>), String> {
        let tag_bytes: [u8; 4] = self.take(4, what)?.try_into().unwrap_or_default();
        match u32::from_le_bytes(tag_bytes) {
            TAG_F16 => {
                let v = self.take(n * 2, what)?.to_vec();
                self.take((4 - (n * 2) % 4) % 4, what)?;
                Ok((Dtype::F16, v))
            }
            0 | TAG_F32_RAW => self.raw_f32(n, what),
            TAG_INT8 => Err(format!("{what}: int8-quantised weights are not supported")),
            tag => Err(format!(
                "{what}: unsupported weight storage tag {tag:#010x} (quantised table?)"
            )),
        }
    }
}

fn read_items(layers: &[Layer], bin: &[u8]) -> Result<(Vec<Item>, bool), String> {
    let mut bin = Bin { data: bin, pos: 0 };
    let mut items = Vec::new();
    let mut has_concat = false;
    for l in layers {
        match l.kind.as_str() {
            "Convolution" => {
                let out = usize::try_from(l.int(0, 0)?)
                    .map_err(|_| format!("{}: bad num_output", l.name))?;
                let kw =
                    usize::try_from(l.int(1, 0)?).map_err(|_| format!("{}: bad kernel", l.name))?;
                let kh = usize::try_from(l.int(11, kw as i64)?)
                    .map_err(|_| format!("{}: bad kernel", l.name))?;
                let size = usize::try_from(l.int(6, 0)?)
                    .map_err(|_| format!("{}: bad weight_data_size", l.name))?;
                if l.int(8, 0)? != 0 {
                    return Err(format!("{}: int8 convolutions are not supported", l.name));
                }
                let per_in = out.checked_mul(kw * kh).filter(|&p| p > 0 && size % p == 0).ok_or_else(|| {
                    format!("{}: weight_data_size {size} is not num_output*kernel ({out}*{kw}*{kh})", l.name)
                })?;
                let (dtype, data) = bin.tagged(size, &format!("{} weights", l.name))?;
                let weight = ImportedTensor {
                    name: String::new(),
                    dtype,
                    shape: vec![out, size / per_in, kh, kw],
                    data,
                };
                let bias = if l.int(5, 0)? != 0 {
                    let (dtype, data) = bin.raw_f32(out, &format!("{} bias", l.name))?;
                    Some(ImportedTensor {
                        name: String::new(),
                        dtype,
                        shape: vec![out],
                        data,
                    })
                } else {
                    None
                };
                items.push(Item::Conv {
                    weight,
                    bias,
                    fused_act: l.int(9, 0)? != 0,
                });
            }
            "PReLU" => {
                let n = usize::try_from(l.int(0, 0)?)
                    .map_err(|_| format!("{}: bad num_slope", l.name))?;
                let (dtype, data) = bin.raw_f32(n, &format!("{} slopes", l.name))?;
                items.push(Item::PRelu(ImportedTensor {
                    name: String::new(),
                    dtype,
                    shape: vec![n],
                    data,
                }));
            }
            "ReLU" => items.push(Item::Act),
            "Concat" => has_concat = true,
            k if WEIGHTLESS.contains(&k) => {}
            k => {
                return Err(format!(
                    "layer {} has type {k}, which this importer does not map",
                    l.name
                ));
            }
        }
    }
    if bin.pos != bin.data.len() {
        return Err(format!(
            ".bin has {} bytes, the graph uses {} (mismatched pair?)",
            bin.data.len(),
            bin.pos
        ));
    }
    Ok((items, has_concat))
}

/// SRVGGNetCompact: convs and activations are `body.0, body.1, ...` in order.
fn name_srvgg(items: Vec<Item>) -> Vec<ImportedTensor> {
    let mut out = Vec::new();
    let mut k = 0;
    for item in items {
        match item {
            Item::Conv {
                mut weight,
                bias,
                fused_act,
            } => {
                weight.name = format!("body.{k}.weight");
                out.push(weight);
                if let Some(mut b) = bias {
                    b.name = format!("body.{k}.bias");
                    out.push(b);
                }
                k += 1 + usize::from(fused_act);
            }
            Item::PRelu(mut t) => {
                t.name = format!("body.{k}.weight");
                out.push(t);
                k += 1;
            }
            Item::Act => k += 1,
        }
    }
    out
}

/// RRDBNet: conv_first, 15 convs per block, conv_body, conv_up1, conv_up2,
/// conv_hr, conv_last.
fn name_rrdbnet(items: Vec<Item>) -> Result<Vec<ImportedTensor>, String> {
    let convs: Vec<(ImportedTensor, Option<ImportedTensor>)> = items
        .into_iter()
        .filter_map(|i| match i {
            Item::Conv { weight, bias, .. } => Some(Ok((weight, bias))),
            Item::PRelu(_) => Some(Err("PReLU in an RRDBNet-like graph".to_string())),
            Item::Act => None,
        })
        .collect::<Result<_, _>>()?;
    if convs.len() < 21 || !(convs.len() - 6).is_multiple_of(15) {
        return Err(format!(
            "{} convolutions do not fit RRDBNet (6 + 15 per block)",
            convs.len()
        ));
    }
    let blocks = (convs.len() - 6) / 15;
    let mut names = vec!["conv_first".to_string()];
    for b in 0..blocks {
        for r in 1..=3 {
            for c in 1..=5 {
                names.push(format!("body.{b}.rdb{r}.conv{c}"));
            }
        }
    }
    names.extend(["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"].map(String::from));
    let mut out = Vec::new();
    for (name, (mut w, bias)) in names.into_iter().zip(convs) {
        w.name = format!("{name}.weight");
        out.push(w);
        if let Some(mut b) = bias {
            b.name = format!("{name}.bias");
            out.push(b);
        }
    }
    Ok(out)
}

/// Reads an ncnn pair and names its tensors after the PyTorch architecture
/// (SRVGGNetCompact, or RRDBNet when the graph has concatenations).
pub fn read_ncnn(param: &Path, bin: &Path) -> Result<Vec<ImportedTensor>, ImportError> {
    let text = std::fs::read_to_string(param).map_err(|source| ImportError::Io {
        path: param.into(),
        source,
    })?;
    let data = std::fs::read(bin).map_err(|source| ImportError::Io {
        path: bin.into(),
        source,
    })?;
    let bad = |msg: String| ImportError::Format {
        path: param.to_path_buf(),
        msg,
    };
    let layers = parse_param(&text).map_err(bad)?;
    let (items, has_concat) = read_items(&layers, &data).map_err(bad)?;
    let (tensors, want) = if has_concat {
        (name_rrdbnet(items).map_err(bad)?, "rrdbnet")
    } else {
        (name_srvgg(items), "srvgg_compact")
    };
    // Positional naming is only trusted when the result has the full,
    // consistent layout of the architecture.
    let shapes = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    match detect::detect_shapes(&shapes) {
        Some(a) if a.name() == want => Ok(tensors),
        got => Err(bad(format!(
            "the graph's weights do not form a {want} layout{}",
            got.map(|a: ArchInfo| format!(" (looks like {a})"))
                .unwrap_or_default()
        ))),
    }
}

/// f32 little-endian bytes rounded to f16 (for comparing with fp16 exports).
pub fn f32_bytes_to_f16(bytes: &[u8]) -> Vec<f16> {
    bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
        .into_iter()
        .map(f16::from_f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_parser_rejects_garbage() {
        assert!(parse_param("hello").unwrap_err().contains("not an ncnn"));
        assert!(
            parse_param("7767517\n2 2\nInput in 0 1 data\n")
                .unwrap_err()
                .contains("declares 2 layers")
        );
        let l = parse_param("7767517\n1 1\nConvolution c 1 1 a b 0=8 1=3 6=216\n").unwrap();
        assert_eq!(
            (l[0].int(0, 0), l[0].int(11, 3), l[0].int(5, 0)),
            (Ok(8), Ok(3), Ok(0))
        );
    }

    #[test]
    fn truncated_bin_is_an_error() {
        let layers = parse_param("7767517\n1 1\nConvolution c 1 1 a b 0=2 1=1 5=1 6=2\n").unwrap();
        let mut bin = TAG_F16.to_le_bytes().to_vec();
        bin.extend([0u8; 4]); // two f16 weights, already 4-byte aligned
        bin.extend(1.5f32.to_le_bytes()); // one of two biases
        let err = read_items(&layers, &bin).err().unwrap();
        assert!(err.contains("ends early while reading c bias"), "{err}");
        bin.extend(2.5f32.to_le_bytes());
        let (items, _) = read_items(&layers, &bin).unwrap();
        let Item::Conv { weight, bias, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(
            (weight.dtype, &weight.shape[..]),
            (Dtype::F16, &[2, 1, 1, 1][..])
        );
        assert_eq!(
            bytemuck::pod_collect_to_vec::<u8, f32>(&bias.as_ref().unwrap().data),
            [1.5, 2.5]
        );
        bin.push(0);
        assert!(
            read_items(&layers, &bin)
                .err()
                .unwrap()
                .contains("mismatched pair")
        );
    }

    /// A one-block RRDBNet graph (fp32 weights, tag 0): convs are named in
    /// order and each weight lands on its module.
    #[test]
    fn rrdbnet_graph_is_named_in_module_order() {
        let (f, g) = (4usize, 2usize);
        let mut shapes = vec![(f, 3)];
        for _ in 0..3 {
            for c in 1..=5 {
                shapes.push((if c == 5 { f } else { g }, f + (c - 1) * g));
            }
        }
        shapes.extend([(f, f); 4]);
        shapes.push((3, f));
        let mut param = format!(
            "7767517\n{} 1\nInput in 0 1 data\nConcat cat 2 1 a b c\n",
            shapes.len() + 2
        );
        let mut bin = Vec::new();
        for (i, &(o, inp)) in shapes.iter().enumerate() {
            param += &format!(
                "Convolution conv{i} 1 1 a b 0={o} 1=3 5=1 6={} 9=2\n",
                o * inp * 9
            );
            bin.extend(0u32.to_le_bytes());
            bin.extend((0..o * inp * 9).flat_map(|_| (i as f32).to_le_bytes()));
            bin.extend((0..o).flat_map(|_| (-(i as f32)).to_le_bytes()));
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.param"), param).unwrap();
        std::fs::write(dir.path().join("m.bin"), bin).unwrap();
        let t = read_ncnn(&dir.path().join("m.param"), &dir.path().join("m.bin")).unwrap();
        let first = |name: &str| {
            let t = t
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name}"));
            assert_eq!(t.dtype, Dtype::F32);
            bytemuck::pod_collect_to_vec::<u8, f32>(&t.data)[0]
        };
        assert_eq!(first("conv_first.weight"), 0.0);
        assert_eq!(first("body.0.rdb1.conv1.weight"), 1.0);
        assert_eq!(first("body.0.rdb2.conv3.weight"), 8.0);
        assert_eq!(first("body.0.rdb3.conv5.weight"), 15.0);
        assert_eq!(first("conv_body.weight"), 16.0);
        assert_eq!(first("conv_hr.bias"), -19.0);
        assert_eq!(first("conv_last.weight"), 20.0);
        assert_eq!(t.len(), 42);
    }
}
