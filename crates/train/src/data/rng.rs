//! The one seeded generator of the data pipeline (the P×K sampler's order, the augmentation of
//! each image, the within-class split): `triplet-metrics`' SplitMix64, shared with k-means and
//! pair sampling, so that every draw is a pure function of its seed.

pub(crate) use triplet_metrics::SplitMix64;
