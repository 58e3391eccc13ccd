//! Triplet margin loss with online mining for [Burn](https://burn.dev), on any device.
//!
//! Placeholder docs: expanded below once measured.
#![deny(missing_docs)]

mod distance;
mod error;
mod mining;
mod output;
mod reduction;
mod triplet;
mod triplets;
mod weighted;

pub use crate::{
    distance::Distance,
    error::ConfigError,
    mining::{Mining, mine},
    output::{MiningStats, TripletOutput},
    reduction::Reduction,
    triplet::{TripletLoss, TripletLossConfig},
    triplets::Triplets,
};
