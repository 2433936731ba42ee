//! SQL values and result rows, independent of the driver.

use anyhow::{anyhow, Context};

/// A SQLite value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// 64-bit integer.
    Integer(i64),
    /// Double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(v.into())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The rows a statement returned.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One `Vec` of values per row, in column order.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Iterates the rows with access by column name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(move |values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was returned.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of column `name`.
    pub fn value(&self, name: &str) -> anyhow::Result<&'a Value> {
        let index = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| anyhow!("no column named {name:?}"))?;
        Ok(&self.values[index])
    }

    /// Integer column; NULL is an error.
    pub fn i64(&self, name: &str) -> anyhow::Result<i64> {
        self.opt_i64(name)?
            .with_context(|| format!("column {name:?} is NULL"))
    }

    /// Nullable integer column.
    pub fn opt_i64(&self, name: &str) -> anyhow::Result<Option<i64>> {
        match self.value(name)? {
            Value::Integer(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            other => Err(anyhow!("column {name:?} is not an integer: {other:?}")),
        }
    }

    /// Text column; NULL is an error.
    pub fn str(&self, name: &str) -> anyhow::Result<&'a str> {
        self.opt_str(name)?
            .with_context(|| format!("column {name:?} is NULL"))
    }

    /// Nullable text column.
    pub fn opt_str(&self, name: &str) -> anyhow::Result<Option<&'a str>> {
        match self.value(name)? {
            Value::Text(v) => Ok(Some(v.as_str())),
            Value::Null => Ok(None),
            other => Err(anyhow!("column {name:?} is not text: {other:?}")),
        }
    }

    /// Nullable real column (integers are widened).
    pub fn opt_f64(&self, name: &str) -> anyhow::Result<Option<f64>> {
        match self.value(name)? {
            Value::Real(v) => Ok(Some(*v)),
            Value::Integer(v) => Ok(Some(*v as f64)),
            Value::Null => Ok(None),
            other => Err(anyhow!("column {name:?} is not a number: {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_accessors_check_types_and_nulls() {
        let rows = Rows {
            columns: vec!["n".into(), "s".into(), "z".into()],
            rows: vec![vec![Value::Integer(7), "x".into(), Value::Null]],
        };
        let row = rows.first().unwrap();
        assert_eq!(row.i64("n").unwrap(), 7);
        assert_eq!(row.str("s").unwrap(), "x");
        assert_eq!(row.opt_str("z").unwrap(), None);
        assert!(row.i64("z").is_err());
        assert!(row.str("n").is_err());
        assert!(row.value("missing").is_err());
    }
}
