//! Calamaris-style text tables (being written).

use super::Report;
use std::io::{self, Write};

pub fn write(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(
        w,
        "{}",
        serde_json::to_string_pretty(r).map_err(io::Error::other)?
    )
}
