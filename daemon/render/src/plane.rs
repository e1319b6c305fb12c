//! One attribution value per drawn position: the first batch row of an attribution,
//! checked against its shape, summed over channels where the figure needs that, resized
//! to an input image, and where its strongest value lies.

use crate::options::Sign;
use crate::RenderError;

/// Values in row-major order, `height` rows of `width`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plane {
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

/// The first batch row of a tensor `(batch, ...)`, after checking that `shape` and
/// `values` agree.
pub(crate) fn first_row<'a>(what: &str, shape: &[i64], values: &'a [f32]) -> Result<&'a [f32], RenderError> {
    let total =
        shape.iter().try_fold(1usize, |product, &dim| usize::try_from(dim).ok().filter(|&dim| dim > 0).and_then(|dim| product.checked_mul(dim)));
    match total {
        Some(total) if !shape.is_empty() && total == values.len() => Ok(&values[..total / shape[0] as usize]),
        _ => Err(RenderError::BadData(format!(
            "{what} shape {shape:?} does not match its {} values (expected positive dimensions, batch first)",
            values.len()
        ))),
    }
}

impl Plane {
    /// Sums `row`, laid out `(channels, height, width)`, over channels: Captum's
    /// `reduction_axis` for images, so every pixel gets one value.
    pub fn channel_sum(row: &[f32], channels: usize, height: usize, width: usize) -> Plane {
        let plane_len = height * width;
        let mut values = vec![0.0f32; plane_len];
        for channel in row.chunks_exact(plane_len).take(channels) {
            for (sum, value) in values.iter_mut().zip(channel) {
                *sum += value;
            }
        }
        Plane { height, width, values }
    }

    /// Bilinear resampling to `height` × `width` (a Grad-CAM map onto its input).
    pub fn resized(&self, height: usize, width: usize) -> Plane {
        if (height, width) == (self.height, self.width) {
            return self.clone();
        }
        // Pixel centres line up as in `align_corners=False` interpolation: output
        // pixel i samples the source at (i + 0.5) * scale - 0.5.
        let sample = |target: usize, source_len: usize, index: usize| {
            let position = ((index as f32 + 0.5) * source_len as f32 / target as f32 - 0.5).clamp(0.0, (source_len - 1) as f32);
            let low = position.floor() as usize;
            (low, (low + 1).min(source_len - 1), position - low as f32)
        };
        let mut values = Vec::with_capacity(height * width);
        for y in 0..height {
            let (y0, y1, fy) = sample(height, self.height, y);
            for x in 0..width {
                let (x0, x1, fx) = sample(width, self.width, x);
                let at = |row: usize, column: usize| self.values[row * self.width + column];
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                values.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        Plane { height, width, values }
    }
}

/// Index of the strongest value of the chosen sign: the largest magnitude for
/// `absolute_value` and `all`, the largest positive or the most negative value
/// otherwise. `None` when nothing of that sign is non-zero.
pub(crate) fn strongest(values: &[f32], sign: Sign) -> Option<usize> {
    // Strictly greater, so ties go to the first value in reading order.
    let mut best: Option<(usize, f32)> = None;
    for (index, &value) in values.iter().enumerate() {
        let magnitude = if value.is_finite() { sign.select(value).abs() } else { 0.0 };
        if magnitude > best.map_or(0.0, |(_, best)| best) {
            best = Some((index, magnitude));
        }
    }
    best.map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_row_checks_shapes() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(first_row("attribution", &[2, 3], &values).unwrap(), &[1.0, 2.0, 3.0]);
        for bad in [&[2, 2][..], &[], &[0, 6], &[-2, -3]] {
            let error = first_row("attribution", bad, &values).unwrap_err().to_string();
            assert!(error.contains("does not match its 6 values"), "{error}");
        }
    }

    #[test]
    fn channels_are_summed_and_maps_resized() {
        // (channels 3, height 1, width 2)
        let plane = Plane::channel_sum(&[1.0, 2.0, 10.0, 20.0, 100.0, 200.0], 3, 1, 2);
        assert_eq!(plane.values, vec![111.0, 222.0]);
        // 1×2 to 1×4: the outer pixels clamp to the ends, the inner ones interpolate
        // at source positions 0.25 and 0.75.
        let resized = Plane { height: 1, width: 2, values: vec![0.0, 4.0] }.resized(1, 4);
        assert_eq!(resized.values, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn strongest_follows_the_sign() {
        let values = [1.0, -3.0, 2.0, 0.0];
        assert_eq!(strongest(&values, Sign::AbsoluteValue), Some(1));
        assert_eq!(strongest(&values, Sign::All), Some(1));
        assert_eq!(strongest(&values, Sign::Positive), Some(2));
        assert_eq!(strongest(&values, Sign::Negative), Some(1));
        assert_eq!(strongest(&[0.0, 1.0], Sign::Negative), None);
    }
}
