//! Figure options: how to draw an attribution (Captum's `visualize_image_attr` method
//! and sign, outlier percentage, overlay alpha, colour bar), and the linear or log10
//! scales of chart axes and colour maps. Methods and signs parse from Captum's names,
//! scales from `linear` and `log10`, so the daemon can pass strings from a request
//! straight through.

use crate::RenderError;
use std::fmt;
use std::str::FromStr;

/// How to draw an attribution. The defaults are Captum's, except `method` (Captum:
/// `heat_map`), whose default `Auto` keeps layerlens' input | heat map | blend figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FigureOptions {
    pub method: VisualMethod,
    pub sign: Sign,
    /// Percentage of the total attribution (cumulative sum of the sorted values) treated
    /// as outliers and saturated, 0 to 100. Captum's `outlier_perc`, default 2.
    pub outlier_percent: f32,
    /// Opacity of the heat map over the grey input in `blended_heat_map`, 0 to 1.
    pub alpha_overlay: f32,
    /// Draw a colour bar with tick labels under every panel that uses the colour map.
    pub show_colorbar: bool,
}

impl Default for FigureOptions {
    fn default() -> FigureOptions {
        FigureOptions { method: VisualMethod::Auto, sign: Sign::AbsoluteValue, outlier_percent: 2.0, alpha_overlay: 0.5, show_colorbar: true }
    }
}

impl FigureOptions {
    pub(crate) fn validate(&self) -> Result<(), RenderError> {
        if !(0.0..=100.0).contains(&self.outlier_percent) {
            return Err(RenderError::BadOptions(format!("outlier_percent must be between 0 and 100, got {}", self.outlier_percent)));
        }
        if !(0.0..=1.0).contains(&self.alpha_overlay) {
            return Err(RenderError::BadOptions(format!("alpha_overlay must be between 0 and 1, got {}", self.alpha_overlay)));
        }
        Ok(())
    }
}

/// Captum's `ImageVisualizationMethod`, plus `Auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VisualMethod {
    /// Images: input | heat map | blended heat map. Other inputs: the chart that fits
    /// their shape (bar chart, line plot) or a plain heat map.
    #[default]
    Auto,
    HeatMap,
    /// Heat map over the grey mean of the input, with `alpha_overlay` opacity.
    BlendedHeatMap,
    /// Input multiplied pixel-wise by the normalised attribution (one sign only).
    MaskedImage,
    /// Input with its alpha channel set to the normalised attribution (one sign only).
    AlphaScaling,
    OriginalImage,
}

impl VisualMethod {
    pub const ALL: [VisualMethod; 6] = [
        VisualMethod::Auto,
        VisualMethod::HeatMap,
        VisualMethod::BlendedHeatMap,
        VisualMethod::MaskedImage,
        VisualMethod::AlphaScaling,
        VisualMethod::OriginalImage,
    ];

    /// Captum's name (`heat_map`, ...), `auto` for [`VisualMethod::Auto`].
    pub fn name(self) -> &'static str {
        match self {
            VisualMethod::Auto => "auto",
            VisualMethod::HeatMap => "heat_map",
            VisualMethod::BlendedHeatMap => "blended_heat_map",
            VisualMethod::MaskedImage => "masked_image",
            VisualMethod::AlphaScaling => "alpha_scaling",
            VisualMethod::OriginalImage => "original_image",
        }
    }

    /// Whether the method needs the input image (everything but heat maps and charts).
    pub(crate) fn needs_image(self) -> bool {
        matches!(self, VisualMethod::BlendedHeatMap | VisualMethod::MaskedImage | VisualMethod::AlphaScaling | VisualMethod::OriginalImage)
    }

    /// Masking and alpha scaling turn the attribution into a factor in [0, 1]; a signed
    /// attribution has no such reading, which is why Captum refuses sign `all` for them.
    pub(crate) fn check_sign(self, sign: Sign) -> Result<(), RenderError> {
        if sign == Sign::All && matches!(self, VisualMethod::MaskedImage | VisualMethod::AlphaScaling) {
            return Err(RenderError::BadOptions(format!(
                "{} cannot show sign all: it needs attributions of one sign as a factor between 0 and 1; \
                 choose positive, negative or absolute_value",
                self.name()
            )));
        }
        Ok(())
    }
}

impl fmt::Display for VisualMethod {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for VisualMethod {
    type Err = RenderError;

    fn from_str(text: &str) -> Result<VisualMethod, RenderError> {
        VisualMethod::ALL.into_iter().find(|method| method.name() == text).ok_or_else(|| {
            RenderError::BadOptions(format!(
                "unknown figure method {text:?}; expected one of {}",
                VisualMethod::ALL.map(VisualMethod::name).join(", ")
            ))
        })
    }
}

/// Captum's `VisualizeSign`: which attributions a figure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sign {
    /// |attribution|, colour map Blues.
    #[default]
    AbsoluteValue,
    /// Positive attributions only (negatives become 0), colour map Greens.
    Positive,
    /// Negative attributions only (positives become 0), colour map Reds.
    Negative,
    /// Both signs, colour map red (negative) – white – green (positive).
    All,
}

impl Sign {
    pub const ALL: [Sign; 4] = [Sign::AbsoluteValue, Sign::Positive, Sign::Negative, Sign::All];

    /// Captum's name (`absolute_value`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Sign::AbsoluteValue => "absolute_value",
            Sign::Positive => "positive",
            Sign::Negative => "negative",
            Sign::All => "all",
        }
    }

    /// What a figure with this sign shows, in words, for alt text.
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            Sign::AbsoluteValue => "absolute value of the attribution",
            Sign::Positive => "positive attribution",
            Sign::Negative => "negative attribution",
            Sign::All => "signed attribution",
        }
    }

    /// The attribution with this sign selected, as Captum's `_normalize_attr` does
    /// before scaling: negatives dropped, positives dropped, or magnitudes taken.
    pub(crate) fn select(self, value: f32) -> f32 {
        match self {
            Sign::AbsoluteValue => value.abs(),
            Sign::Positive => value.max(0.0),
            Sign::Negative => value.min(0.0),
            Sign::All => value,
        }
    }
}

impl fmt::Display for Sign {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Sign {
    type Err = RenderError;

    fn from_str(text: &str) -> Result<Sign, RenderError> {
        Sign::ALL.into_iter().find(|sign| sign.name() == text).ok_or_else(|| {
            RenderError::BadOptions(format!("unknown attribution sign {text:?}; expected one of {}", Sign::ALL.map(Sign::name).join(", ")))
        })
    }
}

/// How values map to a value axis ([`crate::line_chart`], [`crate::bar_chart`],
/// [`crate::step_chart_scaled`]): evenly, or by their base-10 logarithm. On a log axis
/// values that are not positive cannot be placed; each figure says how it shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AxisScale {
    #[default]
    Linear,
    /// Whole decades, ticks at the powers of ten (and at 2 and 5 on narrow axes).
    Log10,
}

/// How values map to colours in [`crate::matrix_heat_map`]: evenly, or by their base-10
/// logarithm (values that are not positive then count as missing cells).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ColourScale {
    #[default]
    Linear,
    Log10,
}

impl AxisScale {
    pub const ALL: [AxisScale; 2] = [AxisScale::Linear, AxisScale::Log10];

    /// `linear` or `log10`.
    pub fn name(self) -> &'static str {
        match self {
            AxisScale::Linear => "linear",
            AxisScale::Log10 => "log10",
        }
    }
}

impl ColourScale {
    pub const ALL: [ColourScale; 2] = [ColourScale::Linear, ColourScale::Log10];

    /// `linear` or `log10`.
    pub fn name(self) -> &'static str {
        match self {
            ColourScale::Linear => "linear",
            ColourScale::Log10 => "log10",
        }
    }
}

impl FromStr for AxisScale {
    type Err = RenderError;

    fn from_str(text: &str) -> Result<AxisScale, RenderError> {
        AxisScale::ALL.into_iter().find(|scale| scale.name() == text).ok_or_else(|| {
            RenderError::BadOptions(format!("unknown axis scale {text:?}; expected one of {}", AxisScale::ALL.map(AxisScale::name).join(", ")))
        })
    }
}

impl FromStr for ColourScale {
    type Err = RenderError;

    fn from_str(text: &str) -> Result<ColourScale, RenderError> {
        ColourScale::ALL.into_iter().find(|scale| scale.name() == text).ok_or_else(|| {
            RenderError::BadOptions(format!("unknown colour scale {text:?}; expected one of {}", ColourScale::ALL.map(ColourScale::name).join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for method in VisualMethod::ALL {
            assert_eq!(method.name().parse::<VisualMethod>().unwrap(), method);
        }
        for sign in Sign::ALL {
            assert_eq!(sign.to_string().parse::<Sign>().unwrap(), sign);
        }
        let error = "heatmap".parse::<VisualMethod>().unwrap_err().to_string();
        assert!(error.contains("blended_heat_map") && error.contains("\"heatmap\""), "{error}");
        let error = "abs".parse::<Sign>().unwrap_err().to_string();
        assert!(error.contains("absolute_value, positive, negative, all"), "{error}");
        for scale in AxisScale::ALL {
            assert_eq!(scale.name().parse::<AxisScale>().unwrap(), scale);
        }
        for scale in ColourScale::ALL {
            assert_eq!(scale.name().parse::<ColourScale>().unwrap(), scale);
        }
        let error = "log".parse::<AxisScale>().unwrap_err().to_string();
        assert!(error.contains("linear, log10"), "{error}");
    }

    #[test]
    fn out_of_range_options_are_refused() {
        let check = |options: FigureOptions, valid: bool| assert_eq!(options.validate().is_ok(), valid, "{options:?}");
        check(FigureOptions::default(), true);
        check(FigureOptions { outlier_percent: 0.0, alpha_overlay: 1.0, ..FigureOptions::default() }, true);
        check(FigureOptions { outlier_percent: 100.5, ..FigureOptions::default() }, false);
        check(FigureOptions { outlier_percent: f32::NAN, ..FigureOptions::default() }, false);
        check(FigureOptions { alpha_overlay: -0.1, ..FigureOptions::default() }, false);
    }
}
