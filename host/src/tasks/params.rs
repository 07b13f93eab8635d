//! Typed task parameters: each task declares [`ParamSpec`]s; requests are
//! checked against them (type, range, allowed values, unknown names) before a
//! job exists, and defaults are filled in so the job records the effective
//! values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// One of the listed words.
    Enum(&'static [&'static str]),
    Text {
        max_len: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// Filled in when the request leaves the parameter out.
    pub default: Option<ParamValue>,
    pub description: &'static str,
}

impl ParamSpec {
    pub fn int(name: &'static str, min: i64, max: i64, description: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Int { min, max },
            default: None,
            description,
        }
    }
    pub fn float(name: &'static str, min: f64, max: f64, description: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Float { min, max },
            default: None,
            description,
        }
    }
    pub fn bool(name: &'static str, description: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Bool,
            default: None,
            description,
        }
    }
    pub fn choice(
        name: &'static str,
        values: &'static [&'static str],
        description: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Enum(values),
            default: None,
            description,
        }
    }
    pub fn text(name: &'static str, max_len: usize, description: &'static str) -> Self {
        ParamSpec {
            name,
            kind: ParamKind::Text { max_len },
            default: None,
            description,
        }
    }
    pub fn default(mut self, v: impl Into<ParamValue>) -> Self {
        self.default = Some(v.into());
        self
    }

    /// This parameter as a JSON Schema (for `/v1/models` and `/openapi.json`).
    pub fn json_schema(&self) -> Value {
        let mut s = match &self.kind {
            ParamKind::Int { min, max } => {
                json!({"type": "integer", "minimum": min, "maximum": max})
            }
            ParamKind::Float { min, max } => {
                json!({"type": "number", "minimum": min, "maximum": max})
            }
            ParamKind::Bool => json!({"type": "boolean"}),
            ParamKind::Enum(v) => json!({"type": "string", "enum": v}),
            ParamKind::Text { max_len } => json!({"type": "string", "maxLength": max_len}),
        };
        s["description"] = json!(self.description);
        if let Some(d) = &self.default {
            s["default"] = json!(d);
        }
        s
    }
}

impl From<bool> for ParamValue {
    fn from(v: bool) -> Self {
        ParamValue::Bool(v)
    }
}
impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Int(v)
    }
}
impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}
impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_owned())
    }
}

/// A rejected parameter: which one and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

/// Checked parameter values, defaults included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.0.get(name)
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name)? {
            ParamValue::Int(v) => Some(*v),
            _ => None,
        }
    }
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.0.get(name)? {
            ParamValue::Float(v) => Some(*v),
            ParamValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name)? {
            ParamValue::Bool(v) => Some(*v),
            _ => None,
        }
    }
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.0.get(name)? {
            ParamValue::Text(v) => Some(v),
            _ => None,
        }
    }
}

fn err(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_owned(),
        message: message.into(),
    }
}

/// Checks `raw` (JSON values; strings are accepted for every kind, as
/// multipart forms send them) against `specs`.
pub fn validate(
    task: &str,
    specs: &[ParamSpec],
    raw: &serde_json::Map<String, Value>,
) -> Result<Params, ParamError> {
    for name in raw.keys() {
        if !specs.iter().any(|s| s.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
            return Err(err(
                name,
                format!(
                    "unknown parameter `{name}` for task `{task}` (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for spec in specs {
        let value = match raw.get(spec.name) {
            None | Some(Value::Null) => match &spec.default {
                Some(d) => d.clone(),
                None => continue,
            },
            Some(v) => check(spec, v)?,
        };
        out.insert(spec.name.to_owned(), value);
    }
    Ok(Params(out))
}

fn check(spec: &ParamSpec, v: &Value) -> Result<ParamValue, ParamError> {
    let name = spec.name;
    let text = v.as_str().map(str::trim);
    match &spec.kind {
        ParamKind::Int { min, max } => {
            let n = match (v, text) {
                (Value::Number(n), _) => n.as_i64(),
                (_, Some(t)) => t.parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| err(name, format!("must be an integer, got {v}")))?;
            if n < *min || n > *max {
                return Err(err(
                    name,
                    format!("must be between {min} and {max}, got {n}"),
                ));
            }
            Ok(ParamValue::Int(n))
        }
        ParamKind::Float { min, max } => {
            let n = match (v, text) {
                (Value::Number(n), _) => n.as_f64(),
                (_, Some(t)) => t.parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite())
            .ok_or_else(|| err(name, format!("must be a number, got {v}")))?;
            if n < *min || n > *max {
                return Err(err(
                    name,
                    format!("must be between {min} and {max}, got {n}"),
                ));
            }
            Ok(ParamValue::Float(n))
        }
        ParamKind::Bool => match (v, text) {
            (Value::Bool(b), _) => Ok(ParamValue::Bool(*b)),
            (_, Some("true" | "1" | "yes" | "on")) => Ok(ParamValue::Bool(true)),
            (_, Some("false" | "0" | "no" | "off")) => Ok(ParamValue::Bool(false)),
            _ => Err(err(name, format!("must be true or false, got {v}"))),
        },
        ParamKind::Enum(values) => {
            let t = text.ok_or_else(|| {
                err(
                    name,
                    format!("must be one of {}, got {v}", values.join("|")),
                )
            })?;
            let lower = t.to_ascii_lowercase();
            if values.contains(&lower.as_str()) {
                Ok(ParamValue::Text(lower))
            } else {
                Err(err(
                    name,
                    format!("must be one of {}, got `{t}`", values.join("|")),
                ))
            }
        }
        ParamKind::Text { max_len } => {
            let t = v
                .as_str()
                .ok_or_else(|| err(name, format!("must be a string, got {v}")))?;
            if t.chars().count() > *max_len {
                return Err(err(name, format!("must be at most {max_len} characters")));
            }
            Ok(ParamValue::Text(t.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::int("width", 1, 100, "w"),
            ParamSpec::float("scale", 0.5, 4.0, "s").default(2.0),
            ParamSpec::bool("strip", "b").default(true),
            ParamSpec::choice("format", &["png", "jpeg"], "f"),
            ParamSpec::text("note", 3, "n"),
        ]
    }

    fn raw(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_typed_and_string_values_and_fills_defaults() {
        let p = validate(
            "t",
            &specs(),
            &raw(json!({"width": "7", "format": "PNG", "strip": "false"})),
        )
        .unwrap();
        assert_eq!(p.int("width"), Some(7));
        assert_eq!(p.str("format"), Some("png"));
        assert_eq!(p.bool("strip"), Some(false));
        assert_eq!(p.float("scale"), Some(2.0));
        assert_eq!(p.get("note"), None);
    }

    #[test]
    fn names_the_bad_parameter() {
        let cases = [
            (json!({"width": 0}), "width"),
            (json!({"width": 1.5}), "width"),
            (json!({"width": "abc"}), "width"),
            (json!({"scale": 9}), "scale"),
            (json!({"strip": "maybe"}), "strip"),
            (json!({"format": "gif"}), "format"),
            (json!({"note": "long"}), "note"),
            (json!({"bogus": 1}), "bogus"),
        ];
        for (v, param) in cases {
            let e = validate("t", &specs(), &raw(v.clone())).unwrap_err();
            assert_eq!(e.param, param, "{v}: {e}");
        }
    }
}
