//! Captum's attribution normalisation (`_normalize_attr`): select a sign, find the
//! outlier threshold by cumulative sum, divide by it and clip to [-1, 1]. Every figure
//! colours, masks or fades by these numbers, so they are written once, here.

use crate::options::Sign;

/// Attributions after normalisation, in the order they came in.
pub(crate) struct Normalised {
    /// In [0, 1] for `absolute_value`, `positive` and `negative` (where 1 is the most
    /// negative), in [-1, 1] for `all`.
    pub values: Vec<f32>,
    /// The attribution value that maps to 1: the cumulative-sum threshold, negative for
    /// sign `negative` as in Captum. Zero when no value of the sign is non-zero.
    pub threshold: f32,
}

/// The smallest value `v` of the sorted (non-negative) `values` such that the values up
/// to and including `v` sum to at least `percentile`% of the total. Unlike a percentile
/// of the values, this weighs each value by its size: with `percentile` 98 the largest
/// values that together make up the last 2% of the total are the outliers.
pub(crate) fn cumulative_sum_threshold(values: &[f32], percentile: f64) -> f32 {
    let mut sorted: Vec<f32> = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let total: f64 = sorted.iter().map(|&value| value as f64).sum();
    // Same order of operations as Captum (`cum_sums[-1] * 0.01 * percentile`) so that
    // ties at the boundary fall the same way.
    let target = total * 0.01 * percentile;
    let mut running = 0.0f64;
    for &value in &sorted {
        running += value as f64;
        if running >= target {
            return value;
        }
    }
    // Rounding can leave the running sum a hair under a 100% target; the largest value
    // is then the answer, as it is in Captum where the last cumulative sum is the total.
    sorted.last().copied().unwrap_or(0.0)
}

/// Captum's `_normalize_attr` for one plane of (already channel-summed) attributions.
///
/// Two departures, both so that a figure is always drawn: non-finite values count as 0,
/// and when nothing of the chosen sign is non-zero (Captum asserts) every normalised
/// value is 0 and the threshold is 0.
pub(crate) fn normalise(values: &[f32], sign: Sign, outlier_percent: f32) -> Normalised {
    let selected: Vec<f32> = values.iter().map(|&value| if value.is_finite() { sign.select(value) } else { 0.0 }).collect();
    let magnitudes: Vec<f32> = selected.iter().map(|value| value.abs()).collect();
    let magnitude = cumulative_sum_threshold(&magnitudes, 100.0 - outlier_percent as f64);
    let threshold = if sign == Sign::Negative { -magnitude } else { magnitude };
    let values =
        if threshold == 0.0 { vec![0.0; selected.len()] } else { selected.iter().map(|&value| (value / threshold).clamp(-1.0, 1.0)).collect() };
    Normalised { values, threshold }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// values, sign, outlier percent, expected threshold, expected normalised values.
    type Case<'a> = (&'a [f32], Sign, f32, f32, &'a [f32]);

    /// Expected numbers worked out by hand from the definition: sort the magnitudes of
    /// the selected sign, accumulate, take the first value whose running sum reaches
    /// (100 - outlier)% of the total, divide and clip.
    #[test]
    fn normalisation_matches_hand_computed_cumulative_sum_thresholds() {
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            // |v| sorted 1 2 3 4, sums 1 3 6 10; 98% of 10 = 9.8, first reached at 4.
            (&[1.0, 2.0, 3.0, 4.0], Sign::AbsoluteValue, 2.0, 4.0, &[0.25, 0.5, 0.75, 1.0]),
            // Same values, 50%: target 5, first reached at 3 (sum 6); 4/3 clips to 1.
            (&[1.0, 2.0, 3.0, 4.0], Sign::AbsoluteValue, 50.0, 3.0, &[1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]),
            // all: threshold from |v| (1 2 3 4, target 5 -> 3), signs kept, -4/3 clips to -1.
            (&[-4.0, 1.0, 2.0, -3.0], Sign::All, 50.0, 3.0, &[-1.0, 1.0 / 3.0, 2.0 / 3.0, -1.0]),
            // positive: 0 1 2 0 6 sorted 0 0 1 2 6, sums 0 0 1 3 9; 80% of 9 = 7.2 -> 6.
            // (A plain 80th percentile of those values would be about 2.8, not 6.)
            (&[-4.0, 1.0, 2.0, -3.0, 6.0], Sign::Positive, 20.0, 6.0, &[0.0, 1.0 / 6.0, 1.0 / 3.0, 0.0, 1.0]),
            // negative: |min(v, 0)| = 4 0 0 3 1 sorted 0 0 1 3 4, sums 0 0 1 4 8;
            // 70% of 8 = 5.6 -> 4, threshold -4; -4/-4 = 1, -3/-4 = 0.75, -1/-4 = 0.25.
            (&[-4.0, 1.0, 2.0, -3.0, -1.0], Sign::Negative, 30.0, -4.0, &[1.0, 0.0, 0.0, 0.75, 0.25]),
            // outlier 0: the threshold is the largest magnitude.
            (&[0.5, -2.0, 1.0], Sign::AbsoluteValue, 0.0, 2.0, &[0.25, 1.0, 0.5]),
            // Nothing positive: threshold 0 and a blank map instead of Captum's assertion.
            (&[-1.0, -2.0], Sign::Positive, 2.0, 0.0, &[0.0, 0.0]),
            // A NaN counts as 0 instead of poisoning the sum.
            (&[f32::NAN, 2.0], Sign::AbsoluteValue, 0.0, 2.0, &[0.0, 1.0]),
        ];
        for &(values, sign, outlier, threshold, expected) in cases {
            let normalised = normalise(values, sign, outlier);
            assert_eq!(normalised.threshold, threshold, "threshold of {values:?} {sign} {outlier}%");
            assert_eq!(normalised.values.len(), expected.len());
            for (got, want) in normalised.values.iter().zip(expected) {
                assert!((got - want).abs() < 1e-6, "{values:?} {sign} {outlier}%: got {:?}, want {expected:?}", normalised.values);
            }
        }
    }

    #[test]
    fn default_two_percent_differs_from_a_plain_percentile() {
        // 1..=100 sums to 5050; 98% is 4949. The running sum 1 + ... + k = k(k+1)/2 first
        // reaches it at k = 99 (4950), whereas the 98th percentile of the values is 98.
        let values: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(cumulative_sum_threshold(&values, 98.0), 99.0);
        assert_eq!(cumulative_sum_threshold(&[], 98.0), 0.0);
    }
}
