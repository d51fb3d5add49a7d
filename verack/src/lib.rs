#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
//! verack
pub mod peer;
pub mod wire;
