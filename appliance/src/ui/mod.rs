//! The staff UI served to the counter's tablet (in progress).
