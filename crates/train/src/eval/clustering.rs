//! The clustering group of `triplet eval`: k-means of the query embeddings into as many
//! clusters as classes, then NMI and AMI ([`triplet_metrics::clustering`]), left out by default
//! where k-means would be slow.

use std::collections::HashSet;

/// Above this many multiply-adds per k-means iteration (embeddings × classes × dimension),
/// clustering runs only when `--metrics` asks for it: 5·10⁹ is about a second per iteration on
/// 2 cores, so SOP's 60,502 × 11,316 × 128 test set is left out, CUB's is not.
pub const KMEANS_BUDGET: f64 = 5e9;

/// Why clustering is left out by default for `n` embeddings of `dim` values with these labels:
/// a note when one k-means iteration costs more than [`KMEANS_BUDGET`].
pub fn too_slow(labels: &[usize], dim: usize) -> Option<String> {
    let classes = labels.iter().collect::<HashSet<_>>().len();
    let work = labels.len() as f64 * classes as f64 * dim as f64;
    (work > KMEANS_BUDGET).then(|| {
        format!(
            "clustering left out: k-means of {} embeddings into {classes} clusters is slow \
             ({work:.1e} multiply-adds per iteration); --metrics clustering runs it",
            labels.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_sets_are_left_out_with_a_note() {
        assert!(too_slow(&[0, 1, 2], 128).is_none());
        // 60,000 embeddings of 10,000 classes, 128-d: 7.7e10 multiply-adds.
        let labels: Vec<usize> = (0..60_000).map(|i| i % 10_000).collect();
        let note = too_slow(&labels, 128).unwrap();
        assert!(note.contains("10000 clusters") && note.contains("--metrics clustering"));
    }
}
