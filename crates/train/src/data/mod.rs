//! Data for training: readers for the supported sources, the P×K batch sampler, the input
//! transform and the streaming loader.

pub mod augment;
pub mod csv;
pub mod decode;
pub mod idx;
pub mod listing;
pub mod loader;
pub mod rng;
pub mod sampler;
pub mod source;
pub mod split;
