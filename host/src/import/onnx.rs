//! Reads the weights of an ONNX model (the `.onnx` files rembg users have:
//! u2net.onnx, isnet-general-use.onnx, ...) without an ONNX runtime: a
//! small protobuf reader walks `ModelProto.graph` for its initializers and
//! nodes, and names each weight after the PyTorch module that owns it.
//!
//! PyTorch's exporter names nodes by module scope (`/stage1/rebnconvin/
//! conv_s1/Conv`) while the initializers of folded convs get anonymous
//! names (`onnx::Conv_1896`). A Conv node's weight and bias become
//! `<scope>.weight` / `<scope>.bias` (scope `stage1.rebnconvin.conv_s1`); a
//! BatchNormalization node's inputs become `<scope>.{weight, bias,
//! running_mean, running_var}`. Inputs reached through `Cast`/`Identity`
//! (fp16 models) are followed back to their initializer. Initializers no
//! scoped node claims keep their own name (older exporters already use the
//! state-dict names there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed ONNX protobuf: {0}")]
    Malformed(String),
    #[error("initializer '{name}': {msg}")]
    Tensor { name: String, msg: String },
}

/// One imported tensor: name, shape, values as f32.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Reads `path` and returns its weights under PyTorch parameter names, in
/// graph order.
pub fn import_onnx(path: &Path) -> Result<Vec<NamedTensor>, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    import_onnx_bytes(&bytes)
}

pub fn import_onnx_bytes(bytes: &[u8]) -> Result<Vec<NamedTensor>, OnnxError> {
    let Graph {
        nodes,
        initializers,
    } = parse_model(bytes)?;
    // Follow Cast/Identity outputs back to initializers.
    let mut alias: HashMap<String, String> = HashMap::new();
    for n in &nodes {
        if matches!(n.op_type.as_str(), "Cast" | "Identity")
            && let (Some(i), Some(o)) = (n.inputs.first(), n.outputs.first())
        {
            alias.insert(o.clone(), i.clone());
        }
    }
    let resolve = |name: &str| {
        let mut name = name.to_string();
        for _ in 0..8 {
            match alias.get(&name) {
                Some(src) => name = src.clone(),
                None => break,
            }
        }
        name
    };
    let mut names: HashMap<String, String> = HashMap::new();
    for n in &nodes {
        let params: &[&str] = match n.op_type.as_str() {
            "Conv" | "ConvTranspose" | "Gemm" => &["weight", "bias"],
            "BatchNormalization" => &["weight", "bias", "running_mean", "running_var"],
            _ => continue,
        };
        let Some(scope) = scope_of(&n.name) else {
            continue;
        };
        for (input, p) in n.inputs.iter().skip(1).zip(params) {
            if !input.is_empty() {
                names
                    .entry(resolve(input))
                    .or_insert(format!("{scope}.{p}"));
            }
        }
    }
    initializers
        .into_iter()
        .map(|t| {
            let values = t.values()?;
            let name = names.get(&t.name).cloned().unwrap_or(t.name);
            Ok((name, t.dims, values))
        })
        .collect()
}

/// `/stage1/rebnconvin/conv_s1/Conv` -> `stage1.rebnconvin.conv_s1`; `None`
/// for unscoped names (`Conv_0`, `/Conv`).
fn scope_of(node: &str) -> Option<String> {
    let path = node.strip_prefix('/')?;
    let (scope, _op) = path.rsplit_once('/')?;
    (!scope.is_empty()).then(|| scope.replace('/', "."))
}

#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    initializers: Vec<TensorProto>,
}

#[derive(Debug, Default)]
struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    name: String,
    op_type: String,
}

#[derive(Debug, Default)]
struct TensorProto {
    name: String,
    dims: Vec<usize>,
    data_type: i32,
    raw: Vec<u8>,
    floats: Vec<f32>,
    doubles: Vec<f64>,
    int32s: Vec<i32>,
    external: bool,
}

// TensorProto.DataType values used by weights.
const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;
const BFLOAT16: i32 = 16;

impl TensorProto {
    fn values(&self) -> Result<Vec<f32>, OnnxError> {
        let err = |msg: String| OnnxError::Tensor {
            name: self.name.clone(),
            msg,
        };
        if self.external {
            return Err(err(
                "external data files are not supported; re-save the model with its weights inline"
                    .into(),
            ));
        }
        let n: usize = self.dims.iter().product();
        let v: Vec<f32> = match self.data_type {
            FLOAT if !self.raw.is_empty() => self
                .raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            FLOAT => self.floats.clone(),
            DOUBLE if !self.raw.is_empty() => self
                .raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            DOUBLE => self.doubles.iter().map(|&d| d as f32).collect(),
            FLOAT16 | BFLOAT16 => {
                let bits: Vec<u16> = if self.raw.is_empty() {
                    self.int32s.iter().map(|&b| b as u16).collect()
                } else {
                    self.raw
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect()
                };
                if self.data_type == FLOAT16 {
                    bits.iter()
                        .map(|&b| half::f16::from_bits(b).to_f32())
                        .collect()
                } else {
                    bits.iter()
                        .map(|&b| half::bf16::from_bits(b).to_f32())
                        .collect()
                }
            }
            other => return Err(err(format!("data type {other} is not a float type"))),
        };
        if v.len() != n {
            return Err(err(format!("{} values for dims {:?}", v.len(), self.dims)));
        }
        Ok(v)
    }
}

/// Protobuf wire reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| OnnxError::Malformed("truncated varint".into()))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(OnnxError::Malformed("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| OnnxError::Malformed("field runs past the end".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, OnnxError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let v = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = self.varint()? as usize;
                Value::Bytes(self.take(n)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            t => return Err(OnnxError::Malformed(format!("unsupported wire type {t}"))),
        };
        Ok(Some((key >> 3, v)))
    }
}

fn string(b: &[u8]) -> Result<String, OnnxError> {
    String::from_utf8(b.to_vec()).map_err(|_| OnnxError::Malformed("string is not UTF-8".into()))
}

/// Repeated scalar field: packed (bytes) or one value per occurrence.
fn push_varints(v: Value<'_>, out: &mut Vec<u64>) -> Result<(), OnnxError> {
    match v {
        Value::Varint(x) => out.push(x),
        Value::Bytes(b) => {
            let mut r = Reader::new(b);
            while r.pos < b.len() {
                out.push(r.varint()?);
            }
        }
        _ => return Err(OnnxError::Malformed("expected a varint field".into())),
    }
    Ok(())
}

fn parse_model(bytes: &[u8]) -> Result<Graph, OnnxError> {
    let mut r = Reader::new(bytes);
    let mut graph = None;
    while let Some((f, v)) = r.field()? {
        if let (7, Value::Bytes(b)) = (f, v) {
            graph = Some(parse_graph(b)?);
        }
    }
    graph
        .ok_or_else(|| OnnxError::Malformed("no graph in the model (is this an ONNX file?)".into()))
}

fn parse_graph(bytes: &[u8]) -> Result<Graph, OnnxError> {
    let mut g = Graph::default();
    let mut r = Reader::new(bytes);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Bytes(b)) => g.nodes.push(parse_node(b)?),
            (5, Value::Bytes(b)) => g.initializers.push(parse_tensor(b)?),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_node(bytes: &[u8]) -> Result<Node, OnnxError> {
    let mut n = Node::default();
    let mut r = Reader::new(bytes);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, Value::Bytes(b)) => n.inputs.push(string(b)?),
            (2, Value::Bytes(b)) => n.outputs.push(string(b)?),
            (3, Value::Bytes(b)) => n.name = string(b)?,
            (4, Value::Bytes(b)) => n.op_type = string(b)?,
            _ => {}
        }
    }
    Ok(n)
}

fn parse_tensor(bytes: &[u8]) -> Result<TensorProto, OnnxError> {
    let mut t = TensorProto::default();
    let mut dims = Vec::new();
    let mut int32s = Vec::new();
    let mut r = Reader::new(bytes);
    while let Some((f, v)) = r.field()? {
        match (f, v) {
            (1, v) => push_varints(v, &mut dims)?,
            (2, Value::Varint(x)) => t.data_type = x as i32,
            (4, Value::Bytes(b)) => t.floats.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            (4, Value::Fixed32(x)) => t.floats.push(f32::from_bits(x)),
            (5, v) => push_varints(v, &mut int32s)?,
            (8, Value::Bytes(b)) => t.name = string(b)?,
            (9, Value::Bytes(b)) => t.raw = b.to_vec(),
            (10, Value::Bytes(b)) => t.doubles.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
            ),
            (10, Value::Fixed64(x)) => t.doubles.push(f64::from_bits(x)),
            (13, _) => t.external = true,
            (14, Value::Varint(1)) => t.external = true,
            _ => {}
        }
    }
    t.dims = dims.into_iter().map(|d| d as usize).collect();
    t.int32s = int32s.into_iter().map(|x| x as i32).collect();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: u64, wire: u64) -> Vec<u8> {
        varint(field << 3 | wire)
    }
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes_field(field: u64, b: &[u8]) -> Vec<u8> {
        let mut out = key(field, 2);
        out.extend(varint(b.len() as u64));
        out.extend(b);
        out
    }

    /// A hand-encoded model: an fp16 initializer reached through a Cast, a
    /// float initializer with unpacked dims, and a scoped Conv node.
    #[test]
    fn names_weights_by_node_scope_through_casts() {
        let mut w16 = bytes_field(8, b"onnx::Conv_7");
        w16.extend(key(1, 0));
        w16.extend(varint(2));
        w16.extend(key(2, 0));
        w16.extend(varint(FLOAT16 as u64));
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        w16.extend(bytes_field(9, &raw));
        let mut b32 = bytes_field(8, b"side1.bias");
        b32.extend(key(1, 0));
        b32.extend(varint(1));
        b32.extend(key(2, 0));
        b32.extend(varint(FLOAT as u64));
        b32.extend(key(4, 5));
        b32.extend(0.25f32.to_le_bytes());
        let mut cast = bytes_field(1, b"onnx::Conv_7");
        cast.extend(bytes_field(2, b"w32"));
        cast.extend(bytes_field(4, b"Cast"));
        let mut conv = bytes_field(1, b"x");
        conv.extend(bytes_field(1, b"w32"));
        conv.extend(bytes_field(1, b"side1.bias"));
        conv.extend(bytes_field(3, b"/stage1/rebnconvin/conv_s1/Conv"));
        conv.extend(bytes_field(4, b"Conv"));
        let mut graph = bytes_field(1, &cast);
        graph.extend(bytes_field(1, &conv));
        graph.extend(bytes_field(5, &w16));
        graph.extend(bytes_field(5, &b32));
        let mut model = key(1, 0);
        model.extend(varint(7));
        model.extend(bytes_field(7, &graph));
        let t = import_onnx_bytes(&model).unwrap();
        assert_eq!(
            t[0],
            (
                "stage1.rebnconvin.conv_s1.weight".into(),
                vec![2],
                vec![1.5, -2.0]
            )
        );
        assert_eq!(
            t[1],
            ("stage1.rebnconvin.conv_s1.bias".into(), vec![1], vec![0.25])
        );
    }

    #[test]
    fn rejects_truncated_and_non_onnx_input() {
        assert!(matches!(
            import_onnx_bytes(b""),
            Err(OnnxError::Malformed(_))
        ));
        assert!(matches!(
            import_onnx_bytes(&[0x3a, 0x05, 0x01]),
            Err(OnnxError::Malformed(_))
        ));
        assert_eq!(scope_of("Conv_0"), None);
        assert_eq!(scope_of("/side1/Conv").as_deref(), Some("side1"));
    }
}
