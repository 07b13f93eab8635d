//! Typed access to parameter lists.

use crate::{Param, Value};

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Integer(i.into())
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Integer(i.into())
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

/// Lookups and updates on a request's or step's parameters.
///
/// ```
/// use easel_sdk::{Param, ParamsExt, Value};
///
/// let mut params: Vec<Param> = Vec::new();
/// params.set("prompt", "a red chair");
/// params.set("steps", 30);
/// assert_eq!(params.text("prompt"), Some("a red chair"));
/// assert_eq!(params.integer("steps"), Some(30));
/// assert_eq!(params.number("steps"), Some(30.0));
/// params.set("steps", 20);
/// assert_eq!(params.len(), 2, "set replaces");
/// ```
pub trait ParamsExt {
    /// The value of the first parameter called `name`.
    fn get(&self, name: &str) -> Option<&Value>;
    /// Sets `name` (replacing an existing value) .
    fn set(&mut self, name: &str, value: impl Into<Value>);
    /// Removes `name`; true if it was there.
    fn remove(&mut self, name: &str) -> bool;

    fn text(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    fn integer(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// A number, accepting integers too.
    fn number(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            Value::Number(n) => Some(*n),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

impl ParamsExt for Vec<Param> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    fn set(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.iter_mut().find(|p| p.name == name) {
            Some(p) => p.value = value,
            None => self.push(Param {
                name: name.to_owned(),
                value,
            }),
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let before = self.len();
        self.retain(|p| p.name != name);
        self.len() != before
    }
}
