//! The colour type every figure is drawn in, Captum's default colour maps per sign (all:
//! red–white–green, positive: Greens, negative: Reds, absolute_value: Blues), viridis for
//! plain magnitudes, and the fixed colours of charts and text.
//!
//! Everything that draws depends on this file, so it depends on nothing that draws: the
//! scene, the rasteriser and the SVG writer all take [`Colour`] from here, and this file
//! uses none of them.

use crate::options::Sign;

/// An opaque RGB colour, one byte per channel.
pub(crate) type Colour = [u8; 3];

pub(crate) const TEXT: Colour = [33, 33, 33];
pub(crate) const AXIS: Colour = [80, 80, 80];
pub(crate) const GRID: Colour = [225, 225, 225];

/// The colour of a normalised attribution (`[-1, 1]` for `all`, `[0, 1]` otherwise),
/// with Captum's vmin/vmax: -1..1 for `all`, 0..1 for the others.
pub(crate) fn colour_map(sign: Sign, normalised: f32) -> Colour {
    let gradient = match sign {
        Sign::All => return red_white_green((normalised.clamp(-1.0, 1.0) + 1.0) / 2.0),
        Sign::Positive => colorous::GREENS,
        Sign::Negative => colorous::REDS,
        Sign::AbsoluteValue => colorous::BLUES,
    };
    let colour = gradient.eval_continuous(normalised.clamp(0.0, 1.0) as f64);
    [colour.r, colour.g, colour.b]
}

/// Captum's `LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])`:
/// matplotlib's named colours red #ff0000 and green #008000, linear in RGB through white.
fn red_white_green(t: f32) -> Colour {
    const RED: [f32; 3] = [255.0, 0.0, 0.0];
    const WHITE_F: [f32; 3] = [255.0, 255.0, 255.0];
    const GREEN: [f32; 3] = [0.0, 128.0, 0.0];
    let (from, to, f) = if t < 0.5 { (RED, WHITE_F, t * 2.0) } else { (WHITE_F, GREEN, (t - 0.5) * 2.0) };
    [0, 1, 2].map(|c| (from[c] + (to[c] - from[c]) * f).round() as u8)
}

/// A bar or line in charts: the strong end of the sign's colour map, with green for
/// positive and red for negative values when both signs are shown.
pub(crate) fn chart_colour(sign: Sign, value: f32) -> Colour {
    match sign {
        Sign::All if value < 0.0 => colour_map(Sign::Negative, 0.8),
        Sign::All => colour_map(Sign::Positive, 0.8),
        sign => colour_map(sign, 0.8),
    }
}

/// `gradient` at `t` (clamped to 0..=1) as a [`Colour`].
pub(crate) fn gradient_colour(gradient: colorous::Gradient, t: f64) -> Colour {
    let colour = gradient.eval_continuous(t.clamp(0.0, 1.0));
    [colour.r, colour.g, colour.b]
}

/// Viridis, the perceptually uniform sequential map (dark purple at 0, yellow at 1), for
/// plain magnitudes: loss landscapes, heat maps of a matrix without a healthy band.
pub(crate) fn viridis(t: f64) -> Colour {
    gradient_colour(colorous::VIRIDIS, t)
}

/// Perceived brightness of `colour`, 0 (black) to 1 (white), Rec. 709 weights: which of
/// dark or white text and lines stays readable on it.
pub(crate) fn luminance(colour: Colour) -> f32 {
    (0.2126 * colour[0] as f32 + 0.7152 * colour[1] as f32 + 0.0722 * colour[2] as f32) / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_follow_captum_defaults() {
        assert_eq!(colour_map(Sign::All, -1.0), [255, 0, 0]);
        assert_eq!(colour_map(Sign::All, 0.0), [255, 255, 255]);
        assert_eq!(colour_map(Sign::All, 1.0), [0, 128, 0]);
        // Sequential maps run from near-white to a dark hue: blue, green, red channel wins.
        let dark = |sign| colour_map(sign, 1.0);
        assert!(dark(Sign::AbsoluteValue)[2] > dark(Sign::AbsoluteValue)[0]);
        assert!(dark(Sign::Positive)[1] > dark(Sign::Positive)[0]);
        assert!(dark(Sign::Negative)[0] > dark(Sign::Negative)[1]);
        assert!(colour_map(Sign::AbsoluteValue, 0.0).iter().all(|&c| c > 240));
    }
}
