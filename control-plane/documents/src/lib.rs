//! `kakanai-documents` — printed documents: pre-filled forms and the procedure guide
//! as PDF (in progress).
#![forbid(unsafe_code)]
