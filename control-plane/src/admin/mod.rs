//! The administrators' web UI (in progress).
