//! Embedding backbones and heads for Triplet (filled in by the `triplet train` issue).
