//! The `triplet` command-line tool (filled in by the `triplet train` issue).
