//! Read-only queries for the web UI's listings (filters, paging, counts the
//! `StateStore` contract does not offer), written once in SQLite's dialect
//! and run on either backend: for PostgreSQL, `?N` becomes `$N` and the
//! `+column` index hints SQLite's planner needs are dropped.

use super::postgres::PgStore;
use super::{SqliteStore, StoreError};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A parameter or a column value of a listing query.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// An integer (counts, sequence numbers, limits).
    Int(i64),
    /// Text (ids, names, times).
    Text(String),
}

impl SqlValue {
    /// The text, if it is text.
    pub fn text(&self) -> Option<String> {
        match self {
            SqlValue::Text(text) => Some(text.clone()),
            _ => None,
        }
    }

    /// The integer, 0 if it is not one.
    pub fn int(&self) -> i64 {
        match self {
            SqlValue::Int(n) => *n,
            _ => 0,
        }
    }
}

impl From<&str> for SqlValue {
    fn from(text: &str) -> Self {
        SqlValue::Text(text.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(text: String) -> Self {
        SqlValue::Text(text)
    }
}

impl From<i64> for SqlValue {
    fn from(n: i64) -> Self {
        SqlValue::Int(n)
    }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            SqlValue::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

/// Runs a listing query on SQLite.
pub fn on_sqlite(store: &SqliteStore, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    store.read(|c| {
        let mut statement = c.prepare_cached(sql)?;
        let columns = statement.column_count();
        statement
            .query_map(rusqlite::params_from_iter(params), |row| {
                (0..columns)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Null => SqlValue::Null,
                            ValueRef::Integer(n) => SqlValue::Int(n),
                            ValueRef::Real(x) => SqlValue::Int(x as i64),
                            ValueRef::Text(t) | ValueRef::Blob(t) => SqlValue::Text(String::from_utf8_lossy(t).into()),
                        })
                    })
                    .collect()
            })?
            .collect()
    })
}

/// SQLite's dialect of a listing query in PostgreSQL's.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        match c {
            '?' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            // `+tenant`: SQLite's hint to not use that column's index; no operator in PostgreSQL.
            '+' if (previous.is_whitespace() || previous == '(')
                && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) => {}
            c => out.push(c),
        }
        previous = c;
    }
    out
}

/// Runs a listing query on PostgreSQL.
pub fn on_postgres(store: &PgStore, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    use tokio_postgres::types::{ToSql, Type};
    let sql = to_postgres(sql);
    let values: Vec<Box<dyn ToSql + Sync + Send>> = params
        .iter()
        .map(|value| -> Box<dyn ToSql + Sync + Send> {
            match value {
                SqlValue::Null => Box::new(None::<String>),
                SqlValue::Int(n) => Box::new(*n),
                SqlValue::Text(text) => Box::new(text.clone()),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect();
    store.read(async |c| {
        let rows = c.query(&sql, &refs).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let ty = row.columns()[i].type_().clone();
                        Ok(if ty == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i)?.map_or(SqlValue::Null, SqlValue::Int)
                        } else if ty == Type::INT4 {
                            row.try_get::<_, Option<i32>>(i)?.map_or(SqlValue::Null, |n| SqlValue::Int(n.into()))
                        } else if ty == Type::BOOL {
                            row.try_get::<_, Option<bool>>(i)?.map_or(SqlValue::Null, |b| SqlValue::Int(b.into()))
                        } else {
                            row.try_get::<_, Option<String>>(i)?.map_or(SqlValue::Null, SqlValue::Text)
                        })
                    })
                    .collect()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_index_hints_are_translated_and_nothing_else() {
        assert_eq!(
            to_postgres("SELECT id FROM flow_runs WHERE +tenant = ?1 AND (+parent IS NULL) AND n = a + ?12"),
            "SELECT id FROM flow_runs WHERE tenant = $1 AND (parent IS NULL) AND n = a + $12"
        );
    }
}
