//! Application records and the RPA/data export (in progress).
