//! Long-term interval summaries in an SQL database (SQLite file or a
//! shared PostgreSQL): every closed window per sniffer and server, coarse
//! rollups, and reports over any range of that history.
//!
//! * `db`: the two databases behind one statement interface.
//! * `schema`: versioned migrations and the store's fixed interval lengths.
//! * `snapshot`: one interval as rows, to and from the database, folded
//!   back into collector tables for reports.
//! * `writer`: the writer thread (batched transactions, bounded queue,
//!   spool file, backlog figure).
//! * `history`: the replay report over a range, key histories, peaks.

pub mod db;
pub mod events;
pub mod history;
pub mod schema;
pub mod snapshot;
pub mod when;
pub mod writer;

pub use db::StoreUrl;
pub use writer::{default_sniffer, CaptureRow, Interval, StoreOptions, Writer};

/// Opens an existing store for reading (reports, the web page).
pub fn open_read(url: &str) -> anyhow::Result<Box<dyn db::Db>> {
    let url: StoreUrl = url.parse()?;
    if let StoreUrl::Sqlite(p) = &url {
        // Reading must not create an empty file by mistake.
        anyhow::ensure!(p.exists(), "cannot open the store {url}: no such file");
    }
    Ok(writer::open(&url, None)?.0)
}
