//! Interactive terminal views over the report model (`memtap top`).

pub mod top;
