//! The `triplet` command-line tool's library: data sources, P×K sampling, and (with the
//! `triplet train` issue) training, evaluation and export.
#![deny(missing_docs)]

pub mod data;
