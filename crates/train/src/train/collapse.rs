//! A one-time warning when the embedding collapses: every distance near 0, or a loss stuck at
//! the margin with every triplet active.

use crate::run::state::CollapseState;

/// Watches for a collapsed embedding: every distance near 0, or a loss stuck at the margin with
/// every triplet active (anchor, positive and negative all at the same place).
#[derive(Debug)]
pub struct CollapseWatch {
    margin: f64,
    streak: u64,
    warned: bool,
}

/// Consecutive suspicious steps before the warning.
const COLLAPSE_STEPS: u64 = 50;

impl CollapseWatch {
    /// A watch for a loss with this margin.
    #[cfg(test)]
    pub fn new(margin: f64) -> Self {
        Self::restore(margin, CollapseState::default())
    }

    /// A watch that goes on from `state` (saved in a checkpoint).
    pub fn restore(margin: f64, state: CollapseState) -> Self {
        Self {
            margin,
            streak: state.streak,
            warned: state.warned,
        }
    }

    /// What a checkpoint saves.
    pub fn state(&self) -> CollapseState {
        CollapseState {
            streak: self.streak,
            warned: self.warned,
        }
    }

    /// Feeds one step; returns the warning the first time collapse has lasted long enough.
    pub fn observe(
        &mut self,
        loss: f64,
        active_fraction: f64,
        d_ap: f64,
        d_an: f64,
    ) -> Option<String> {
        let tiny = d_ap < 1e-3 && d_an < 1e-3;
        let at_margin = self.margin > 0.0
            && (loss - self.margin).abs() < 0.02 * self.margin
            && active_fraction > 0.999
            && (d_an - d_ap).abs() < 0.02 * self.margin.max(d_an);
        self.streak = if tiny || at_margin {
            self.streak + 1
        } else {
            0
        };
        if self.streak >= COLLAPSE_STEPS && !self.warned {
            self.warned = true;
            return Some(format!(
                "warning: the embedding looks collapsed (for {COLLAPSE_STEPS} steps: loss {loss:.4} \
                 ~ margin {}, {:.0}% of triplets active, d_ap {d_ap:.4} ~ d_an {d_an:.4}). All images \
                 map to nearly the same point. Try a lower learning rate, semi-hard instead of hard \
                 mining, a few warm-up steps ([schedule] warmup_steps), and check that labels \
                 match the images.",
                self.margin,
                active_fraction * 100.0
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_is_warned_once_after_a_streak() {
        let mut watch = CollapseWatch::new(0.2);
        for _ in 0..COLLAPSE_STEPS - 1 {
            assert!(watch.observe(0.2, 1.0, 0.0, 0.0).is_none());
        }
        // A healthy step resets the streak.
        assert!(watch.observe(0.1, 0.4, 0.5, 0.9).is_none());
        let warnings: Vec<_> = (0..3 * COLLAPSE_STEPS)
            .filter_map(|_| watch.observe(0.2001, 1.0, 0.7, 0.7001))
            .collect();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("collapsed"));
    }

    #[test]
    fn healthy_training_is_not_flagged() {
        let mut watch = CollapseWatch::new(0.2);
        for i in 0..500 {
            let t = f64::from(i) / 500.0;
            assert!(
                watch
                    .observe(0.15 - 0.1 * t, 0.6 - 0.3 * t, 0.5, 0.8)
                    .is_none()
            );
        }
    }
}
