//! The two databases behind one small interface: statements with `$N`
//! placeholders and rows of plain values. Everything above this module is
//! written once; only connection, parameter binding and the blob type
//! differ between SQLite and PostgreSQL.

use anyhow::{anyhow, Context, Result};

/// A column value. Counters are stored as signed 64-bit integers (both
/// databases' widest integer); `u64` counts round-trip bit for bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Value {
    pub fn u64(&self) -> u64 {
        match self {
            Value::Int(i) => *i as u64,
            _ => 0,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            Value::Int(i) => i.to_string(),
            Value::Null => String::new(),
        }
    }

    pub fn blob(&self) -> Vec<u8> {
        match self {
            Value::Blob(b) => b.clone(),
            Value::Text(s) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v as i64)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

/// Which database a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<StoreUrl> {
        if let Some(p) = s.strip_prefix("sqlite://") {
            return Ok(StoreUrl::Sqlite(p.into()));
        }
        if let Some(p) = s.strip_prefix("sqlite:") {
            anyhow::ensure!(!p.is_empty(), "store URL {s:?}: give a file, sqlite:PATH");
            return Ok(StoreUrl::Sqlite(p.into()));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(s.to_string()));
        }
        Err(anyhow!(
            "store URL {s:?}: unknown scheme; use sqlite:PATH or postgres://USER@HOST:PORT/DB"
        ))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            // Never print a password.
            StoreUrl::Postgres(u) => match (u.find("://"), u.rfind('@')) {
                (Some(a), Some(b)) if b > a => write!(f, "{}://…@{}", &u[..a], &u[b + 1..]),
                _ => f.write_str(u),
            },
        }
    }
}

/// A connection. Statements use `$1, $2, …`; SQLite gets them rewritten.
pub trait Db: Send {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>>;
    /// Several statements without parameters (DDL, BEGIN, COMMIT).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// The column type for byte strings.
    fn blob_type(&self) -> &'static str;
}

pub fn connect(url: &StoreUrl) -> Result<Box<dyn Db>> {
    match url {
        StoreUrl::Sqlite(p) => Ok(Box::new(Sqlite::open(p)?)),
        StoreUrl::Postgres(u) => Ok(Box::new(Pg::open(u)?)),
    }
}

pub struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    pub fn open(p: &std::path::Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open(p)
            .with_context(|| format!("cannot open the store sqlite:{}", p.display()))?;
        // A locked file (another writer) is retried briefly, then reported:
        // the writer thread spools and tries again rather than stalling.
        let named =
            |e: rusqlite::Error| anyhow!("cannot open the store sqlite:{}: {e}", p.display());
        conn.busy_timeout(std::time::Duration::from_millis(200))
            .map_err(named)?;
        // WAL lets `memtap serve` read while a capture writes.
        let _ = conn.pragma_update(None, "journal_mode", "WAL");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(named)?;
        Ok(Sqlite { conn })
    }
}

/// `$12` → `?12` (SQLite numbers `?NNN` parameters the same way).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
        Value::Null => rusqlite::types::Value::Null,
    }
}

impl Db for Sqlite {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut st = self.conn.prepare_cached(&sqlite_sql(sql))?;
        let p: Vec<_> = params.iter().map(to_sql).collect();
        Ok(st.execute(rusqlite::params_from_iter(p))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        let mut st = self.conn.prepare_cached(&sqlite_sql(sql))?;
        let n = st.column_count();
        let p: Vec<_> = params.iter().map(to_sql).collect();
        let mut rows = st.query(rusqlite::params_from_iter(p))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Integer(x) => Value::Int(x),
                    rusqlite::types::ValueRef::Real(x) => Value::Int(x as i64),
                    rusqlite::types::ValueRef::Text(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                    rusqlite::types::ValueRef::Null => Value::Null,
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn blob_type(&self) -> &'static str {
        "BLOB"
    }
}

pub struct Pg {
    client: postgres::Client,
    statements: std::collections::HashMap<String, postgres::Statement>,
}

impl Pg {
    pub fn open(url: &str) -> Result<Pg> {
        let shown = StoreUrl::Postgres(url.to_string()).to_string();
        let mut cfg: postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("cannot open the store {shown}: {e}"))?;
        // An address that swallows packets must not hold the writer (or a
        // start) for the kernel's minutes-long connect timeout.
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(std::time::Duration::from_secs(5));
        }
        let client = cfg
            .connect(postgres::NoTls)
            .map_err(|e| anyhow!("cannot open the store {shown}: {e}"))?;
        Ok(Pg {
            client,
            statements: Default::default(),
        })
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

type PgParam = Box<dyn postgres::types::ToSql + Sync>;

fn pg_params(params: &[Value]) -> Vec<PgParam> {
    params
        .iter()
        .map(|v| -> PgParam {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(s) => Box::new(s.clone()),
                Value::Blob(b) => Box::new(b.clone()),
                Value::Null => Box::new(Option::<i64>::None),
            }
        })
        .collect()
}

impl Db for Pg {
    fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let st = self.statement(sql)?;
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            p.iter().map(|b| b.as_ref()).collect();
        Ok(self.client.execute(&st, &refs)?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>> {
        use postgres::types::Type;
        let st = self.statement(sql)?;
        let p = pg_params(params);
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            p.iter().map(|b| b.as_ref()).collect();
        let rows = self.client.query(&st, &refs)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let t = c.type_();
                let v = if *t == Type::INT8 {
                    r.get::<_, Option<i64>>(i).map(Value::Int)
                } else if *t == Type::INT4 {
                    r.get::<_, Option<i32>>(i).map(|x| Value::Int(x as i64))
                } else if *t == Type::BYTEA {
                    r.get::<_, Option<Vec<u8>>>(i).map(Value::Blob)
                } else {
                    r.get::<_, Option<String>>(i).map(Value::Text)
                };
                row.push(v.unwrap_or(Value::Null));
            }
            out.push(row);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.client.batch_execute(sql)?)
    }

    fn blob_type(&self) -> &'static str {
        "BYTEA"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            "sqlite:memtap.db".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite("memtap.db".into())
        );
        let pg = "postgres://u:secret@h:5/db".parse::<StoreUrl>().unwrap();
        assert_eq!(pg.to_string(), "postgres://…@h:5/db");
        let e = "mysql://x".parse::<StoreUrl>().unwrap_err().to_string();
        assert_eq!(
            e,
            "store URL \"mysql://x\": unknown scheme; use sqlite:PATH or postgres://USER@HOST:PORT/DB"
        );
    }
}
