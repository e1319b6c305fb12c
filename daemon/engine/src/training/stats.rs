//! Statistics of plain numbers shared by the training explanations: norms in f64,
//! quantiles as `torch.quantile` computes them (linear interpolation between the two
//! nearest order statistics), equal-width histograms.

/// The Euclidean norm, accumulated in f64.
pub fn norm(values: &[f64]) -> f64 {
    values.iter().map(|value| value * value).sum::<f64>().sqrt()
}

/// The `q` quantile (0..=1) with linear interpolation, as `torch.quantile`; NaN for no
/// values. Reorders `values`.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lower = position.floor() as usize;
    let fraction = position - lower as f64;
    let (_, &mut below, above) = values.select_nth_unstable_by(lower, f64::total_cmp);
    if fraction == 0.0 || above.is_empty() {
        return below;
    }
    let next = above.iter().copied().fold(f64::INFINITY, f64::min);
    below + (next - below) * fraction
}

/// Median, 99th percentile and maximum of the finite values (NaN when there are none).
pub fn p50_p99_max(values: &[f64]) -> [f64; 3] {
    let mut finite: Vec<f64> = values.iter().copied().filter(|value| value.is_finite()).collect();
    let max = finite.iter().copied().fold(f64::NAN, f64::max);
    let p99 = quantile(&mut finite, 0.99);
    let p50 = quantile(&mut finite, 0.5);
    [p50, p99, max]
}

/// An equal-width histogram of the finite values over their range: `bins + 1` edges
/// and `bins` counts (one bin around a constant). Empty for no finite values.
pub fn histogram(values: &[f64], bins: usize) -> (Vec<f64>, Vec<u64>) {
    let finite = values.iter().copied().filter(|value| value.is_finite());
    let (low, high) = finite.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| (low.min(value), high.max(value)));
    if !low.is_finite() || bins == 0 {
        return (Vec::new(), Vec::new());
    }
    let (low, high) = if high > low { (low, high) } else { (low - 0.5, low + 0.5) };
    let width = (high - low) / bins as f64;
    let edges = (0..=bins).map(|index| low + width * index as f64).collect();
    let mut counts = vec![0u64; bins];
    for value in finite {
        let bin = (((value - low) / width) as usize).min(bins - 1);
        counts[bin] += 1;
    }
    (edges, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_torch() {
        // torch.quantile(torch.tensor([1., 2., 3., 4.]), 0.5) == 2.5; 0.99 -> 3.97
        let mut values = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut values, 0.5), 2.5);
        assert!((quantile(&mut values, 0.99) - 3.97).abs() < 1e-12);
        assert_eq!(quantile(&mut values, 1.0), 4.0);
        assert!(quantile(&mut [], 0.5).is_nan());
        assert_eq!(p50_p99_max(&[f64::NAN, 1.0, 3.0]), [2.0, 2.98, 3.0]);
    }

    #[test]
    fn histograms_cover_the_range_and_count_everything() {
        let (edges, counts) = histogram(&[0.0, 1.0, 1.0, 2.0, f64::NAN], 2);
        assert_eq!(edges, vec![0.0, 1.0, 2.0]);
        assert_eq!(counts, vec![1, 3]);
        let (edges, counts) = histogram(&[5.0, 5.0], 4);
        assert_eq!((edges.first().copied(), edges.last().copied(), counts.iter().sum::<u64>()), (Some(4.5), Some(5.5), 2));
    }
}
