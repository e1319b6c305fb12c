//! Colour maps and value scaling shared by the figures.

/// Maps t in [0, 1] through a sequential map (inferno) for magnitudes.
pub fn sequential(t: f32) -> [u8; 3] {
    let colour = colorous::INFERNO.eval_continuous(t.clamp(0.0, 1.0) as f64);
    [colour.r, colour.g, colour.b]
}

/// Maps t in [-1, 1] through a diverging map (red negative, blue positive).
pub fn diverging(t: f32) -> [u8; 3] {
    let colour = colorous::RED_BLUE.eval_continuous(((t.clamp(-1.0, 1.0) + 1.0) / 2.0) as f64);
    [colour.r, colour.g, colour.b]
}

/// The value below which `1 - outlier_fraction` of |values| lie; Captum clips the top
/// 2% this way before scaling (`_normalize_attr`, `outlier_perc=2`).
pub fn clip_threshold(values: &[f32], outlier_fraction: f32) -> f32 {
    let mut magnitudes: Vec<f32> = values.iter().map(|value| value.abs()).filter(|value| value.is_finite()).collect();
    if magnitudes.is_empty() {
        return 0.0;
    }
    magnitudes.sort_by(|a, b| a.total_cmp(b));
    let rank = (((1.0 - outlier_fraction) * magnitudes.len() as f32).ceil() as usize).clamp(1, magnitudes.len());
    magnitudes[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::clip_threshold;

    #[test]
    fn clip_threshold_drops_the_top_two_percent() {
        let values: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(clip_threshold(&values, 0.02), 98.0);
        assert_eq!(clip_threshold(&[-5.0], 0.02), 5.0);
        assert_eq!(clip_threshold(&[], 0.02), 0.0);
    }
}
