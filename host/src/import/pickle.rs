//! A small, safe subset of Python's pickle VM: exactly the opcodes that
//! `torch.save` emits for state dicts. Globals are resolved against a fixed
//! allow-list (tensor rebuild functions, storage types, `OrderedDict`);
//! anything else is refused, so a malicious checkpoint cannot run code or
//! build arbitrary objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("pickle ends early (truncated or corrupt)")]
    Eof,
    #[error("unsupported pickle opcode {op:#04x} at byte {pos}")]
    Opcode { op: u8, pos: usize },
    #[error(
        "pickle references {module}.{name}, which is not allowed in a weights file (refusing to execute it)"
    )]
    Global { module: String, name: String },
    #[error("malformed pickle at byte {pos}: {msg}")]
    Malformed { pos: usize, msg: String },
}

/// Storage element types torch checkpoints use for weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F16,
    BF16,
    F64,
}

impl StorageDtype {
    pub fn size(self) -> usize {
        match self {
            StorageDtype::F16 | StorageDtype::BF16 => 2,
            StorageDtype::F32 => 4,
            StorageDtype::F64 => 8,
        }
    }
}

/// The allow-listed globals.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    StorageType(StorageDtype),
}

/// A tensor as the pickle describes it: a view into a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Storage key: the zip entry `data/<key>`, or the legacy storage id.
    pub storage_key: String,
    pub dtype: StorageDtype,
    /// Elements in the whole storage.
    pub storage_numel: u64,
    /// In elements.
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

pub type Shared<T> = Rc<RefCell<T>>;

#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    // Lists and dicts are shared and mutable: pickle memoises the empty
    // container, then fills it.
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Global),
    Storage {
        key: String,
        dtype: StorageDtype,
        numel: u64,
    },
    Tensor(Rc<TensorRef>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

const MAX_DEPTH_ITEMS: usize = 1 << 24;

struct Vm<'a, F> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Resolves a persistent id (BINPERSID); torch uses them for storages.
    persistent: F,
}

/// Runs the pickle in `data` and returns the object it builds.
pub fn load<F: FnMut(Value) -> Result<Value, String>>(
    data: &[u8],
    persistent: F,
) -> Result<Value, PickleError> {
    load_at(data, 0, persistent).map(|(v, _)| v)
}

/// Runs one pickle starting at `start`; returns the object and the position
/// after its STOP (the legacy torch format concatenates several pickles).
pub fn load_at<F: FnMut(Value) -> Result<Value, String>>(
    data: &[u8],
    start: usize,
    persistent: F,
) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        persistent,
    };
    let v = vm.run()?;
    Ok((v, vm.pos))
}

fn resolve_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", "FloatStorage") => Global::StorageType(StorageDtype::F32),
        ("torch", "HalfStorage") => Global::StorageType(StorageDtype::F16),
        ("torch", "BFloat16Storage") => Global::StorageType(StorageDtype::BF16),
        ("torch", "DoubleStorage") => Global::StorageType(StorageDtype::F64),
        _ => {
            return Err(PickleError::Global {
                module: module.into(),
                name: name.into(),
            });
        }
    };
    Ok(g)
}

impl<F: FnMut(Value) -> Result<Value, String>> Vm<'_, F> {
    fn err(&self, msg: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            pos: self.pos,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Eof)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Eof)?;
        let s =
            String::from_utf8(rest[..n].to_vec()).map_err(|_| self.err("non-UTF-8 global name"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, PickleError> {
        let b = self.take(n)?.to_vec();
        String::from_utf8(b)
            .map(Value::Str)
            .map_err(|_| self.err("invalid UTF-8 string"))
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let pos = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            pos,
            msg: "stack underflow".into(),
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK"))?;
        if m > self.stack.len() {
            return Err(self.err("MARK beyond stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_DEPTH_ITEMS {
            return Err(self.err("stack too large"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), PickleError> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo {idx} unset")))?;
        self.push(v)
    }

    fn tuple(&mut self, n: usize) -> Result<(), PickleError> {
        if n > self.stack.len() {
            return Err(self.err("stack underflow"));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.push(Value::Tuple(Rc::new(items)))
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of dict items"));
        }
        let Value::Dict(d) = self.top()?.clone() else {
            return Err(self.err("SETITEM(S) on a non-dict"));
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let mut d = d.borrow_mut();
            // Python dict semantics: a repeated key replaces the value.
            match d
                .iter_mut()
                .find(|(ek, _)| matches!((ek, &k), (Value::Str(a), Value::Str(b)) if a == b))
            {
                Some(slot) => slot.1 = v,
                None => d.push((k, v)),
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        let Value::List(l) = self.top()?.clone() else {
            return Err(self.err("APPEND(S) on a non-list"));
        };
        l.borrow_mut().extend(items);
        Ok(())
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let func = self.pop()?;
        let Value::Tuple(args) = args else {
            return Err(self.err("REDUCE arguments are not a tuple"));
        };
        let v = match func {
            Value::Global(Global::OrderedDict) => Value::Dict(Rc::default()),
            Value::Global(Global::RebuildTensorV2) => self.rebuild_tensor(&args)?,
            Value::Global(Global::RebuildParameter) => args
                .first()
                .cloned()
                .ok_or_else(|| self.err("_rebuild_parameter without data"))?,
            other => return Err(self.err(format!("cannot call {other:?}"))),
        };
        self.push(v)
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PickleError> {
        let ints = |v: &Value| -> Option<Vec<usize>> {
            match v {
                Value::Tuple(t) => t
                    .iter()
                    .map(|x| {
                        if let Value::Int(i) = x {
                            usize::try_from(*i).ok()
                        } else {
                            None
                        }
                    })
                    .collect(),
                _ => None,
            }
        };
        match args {
            [
                Value::Storage { key, dtype, numel },
                Value::Int(offset),
                size,
                stride,
                ..,
            ] => {
                let shape =
                    ints(size).ok_or_else(|| self.err("tensor size is not a tuple of ints"))?;
                let stride =
                    ints(stride).ok_or_else(|| self.err("tensor stride is not a tuple of ints"))?;
                if shape.len() != stride.len() {
                    return Err(self.err("tensor size and stride differ in length"));
                }
                let offset =
                    u64::try_from(*offset).map_err(|_| self.err("negative storage offset"))?;
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage_key: key.clone(),
                    dtype: *dtype,
                    storage_numel: *numel,
                    offset,
                    shape,
                    stride,
                })))
            }
            _ => Err(self.err("unexpected _rebuild_tensor_v2 arguments")),
        }
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("pickle protocol {p} unsupported")));
                    }
                }
                0x95 => {
                    // FRAME: framing is only a read-ahead hint.
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v.into()))?
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v.into()))?
                }
                0x8a => {
                    // LONG1: little-endian two's complement, up to 8 bytes here.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.err("integer too large"));
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let b: [u8; 8] = self.take(8)?.try_into().unwrap_or_default();
                    self.push(Value::Float(f64::from_be_bytes(b)))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                b'U' => {
                    // SHORT_BINSTRING (protocol 1/2 str): treat as text.
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b')' => self.push(Value::Tuple(Rc::default()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?
                }
                0x85 => self.tuple(1)?,
                0x86 => self.tuple(2)?,
                0x87 => self.tuple(3)?,
                b']' => self.push(Value::List(Rc::default()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))))?
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b'}' => self.push(Value::Dict(Rc::default()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::default()))?;
                    self.set_items(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(resolve_global(&module, &name)?))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
                        return Err(self.err("STACK_GLOBAL names are not strings"));
                    };
                    let g = resolve_global(m, n)?;
                    self.push(Value::Global(g))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = (self.persistent)(pid).map_err(|m| self.err(m))?;
                    self.push(v)?
                }
                b'R' => self.reduce()?,
                b'b' => {
                    // BUILD: state for an OrderedDict (its `_metadata`) or a
                    // tensor (hooks) carries no weights; drop it.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        _ => return Err(self.err("BUILD on an unsupported object")),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                op => return Err(PickleError::Opcode { op, pos: op_pos }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_persistent(_: Value) -> Result<Value, String> {
        Err("no persistent ids expected".into())
    }

    #[test]
    fn refuses_arbitrary_globals() {
        // pickle.dumps(os.system) style payload: GLOBAL 'os\nsystem\n'.
        let data = b"\x80\x02cos\nsystem\nq\x00.";
        let err = load(data, no_persistent).unwrap_err();
        assert_eq!(
            err,
            PickleError::Global {
                module: "os".into(),
                name: "system".into()
            }
        );
        let data = b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.";
        assert!(matches!(
            load(data, no_persistent),
            Err(PickleError::Global { .. })
        ));
    }

    #[test]
    fn builds_dicts_lists_and_memo() {
        // pickle.dumps({'a': [1, -2, 300, 70000], 'b': ('x', True, None, 1.5)}, protocol=2)
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01J\x70\x11\x01\x00eX\x01\x00\x00\x00bq\x03(X\x01\x00\x00\x00xq\x04\x88NG?\xf8\x00\x00\x00\x00\x00\x00tq\x05u.";
        let v = load(data, no_persistent).unwrap();
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let Value::List(l) = &d[0].1 else { panic!() };
        let ints: Vec<i64> = l
            .borrow()
            .iter()
            .map(|v| if let Value::Int(i) = v { *i } else { 0 })
            .collect();
        assert_eq!(ints, [1, -2, 300, 70000]);
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        assert!(matches!(t[3], Value::Float(f) if f == 1.5));
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let data = b"\x80\x02}q\x00(X\x05\x00\x00\x00ab";
        assert_eq!(load(data, no_persistent).unwrap_err(), PickleError::Eof);
        assert_eq!(load(b"", no_persistent).unwrap_err(), PickleError::Eof);
    }
}
