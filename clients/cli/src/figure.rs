//! Which figure format the daemon should draw, read from the extension of the file a
//! `--figure` (or `--filters`, `--histograms`) flag names. Every command that writes a
//! figure asks here, so they all accept the same names and say the same thing about
//! the others.

use layerlens_client::FigureFormat;
use std::path::Path;

/// The format a figure file's name asks for: `.png` or `.svg`, in any case.
pub fn format_of(flag: &str, path: &Path) -> anyhow::Result<FigureFormat> {
    let extension = path.extension().and_then(|extension| extension.to_str()).unwrap_or_default();
    if extension.eq_ignore_ascii_case("png") {
        Ok(FigureFormat::Png)
    } else if extension.eq_ignore_ascii_case("svg") {
        Ok(FigureFormat::Svg)
    } else {
        anyhow::bail!("{flag} {}: the file name must end in .png or .svg", path.display())
    }
}

/// The one format for a request whose figures are all drawn in the same format:
/// `None` when no figure was asked for, an error when the names disagree (a PNG written
/// into a file named .svg would be a surprise).
pub fn format_of_all(figures: &[(&str, Option<&Path>)]) -> anyhow::Result<FigureFormat> {
    let mut chosen: Option<(&str, &Path, FigureFormat)> = None;
    for &(flag, path) in figures {
        let Some(path) = path else { continue };
        let format = format_of(flag, path)?;
        match chosen {
            Some((first_flag, first_path, first_format)) if first_format != format => anyhow::bail!(
                "{first_flag} {} and {flag} {} ask for different figure formats; give both the same extension",
                first_path.display(),
                path.display()
            ),
            Some(_) => {}
            None => chosen = Some((flag, path, format)),
        }
    }
    Ok(chosen.map_or(FigureFormat::None, |(_, _, format)| format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_picks_the_format_in_any_case() {
        for (name, expected) in [
            ("saliency.png", Some(FigureFormat::Png)),
            ("SALIENCY.PNG", Some(FigureFormat::Png)),
            ("figures.png/graph.Svg", Some(FigureFormat::Svg)),
            ("saliency.gif", None),
            ("png", None),
            ("saliency.png.txt", None),
        ] {
            let answer = format_of("--figure", Path::new(name)).ok();
            assert_eq!(answer, expected, "{name}");
        }
        let png = Path::new("a.png");
        assert_eq!(format_of_all(&[]).unwrap(), FigureFormat::None);
        assert_eq!(format_of_all(&[("--figure", None), ("--filters", None)]).unwrap(), FigureFormat::None);
        assert_eq!(format_of_all(&[("--figure", None), ("--filters", Some(png))]).unwrap(), FigureFormat::Png);
        assert_eq!(format_of_all(&[("--figure", Some(png)), ("--filters", Some(Path::new("b.PNG")))]).unwrap(), FigureFormat::Png);
    }
}
