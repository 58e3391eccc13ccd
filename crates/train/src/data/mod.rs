//! Data for training: readers for the supported sources and the P×K batch sampler.

pub mod decode;
pub mod idx;
pub mod index;
pub mod sampler;
