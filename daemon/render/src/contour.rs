//! A loss landscape ([`contour_plot`]): the loss on a grid of points in a plane through
//! the checkpoint (two directions in weight space, such as the first two principal
//! components of a training trajectory), drawn as a filled colour map with labelled
//! contour lines, the checkpoint at the origin, and training trajectories projected
//! onto the plane as paths.
//!
//! Contour lines come from marching squares on the grid: each grid cell whose corners
//! lie on both sides of a level gets a segment between the interpolated crossings of its
//! edges (saddle cells are split by the mean of their corners), and segments that share
//! an edge are joined into polylines.

use crate::chart::{format_value, nice_ticks, tick_labels, ticks_within};
use crate::colour::{luminance, viridis, Colour, AXIS, TEXT};
use crate::colour_bar::ColourBar;
use crate::figure::encode;
use crate::font::text_width;
use crate::panel::compose;
use crate::scene::{Anchor, Element, Scene};
use crate::small_multiples::{counted, legend_entry, legend_height, legend_layout, marker, series_colour, LEGEND_ROW, TICK_FONT};
use crate::{Figure, Format, RenderError};
use image::{Rgba, RgbaImage};
use std::collections::HashMap;

/// A path drawn over a [`contour_plot`], e.g. a training trajectory projected onto the
/// plot's two directions: a polyline through `points` (x, y) with a marker at each,
/// named in the legend. `point_labels` is empty or holds one label per point (`epoch
/// 3`); labels that would overlap others are left out, the first and last go first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlotPath<'a> {
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub point_labels: &'a [String],
}

/// The longer side of the plot; the other follows the grid's aspect ratio, at least
/// [`MIN_PLOT_SIDE`].
const PLOT_SIDE: f32 = 480.0;
const MIN_PLOT_SIDE: f32 = 240.0;
const MIN_AXIS_LEFT: f32 = 40.0;
const CAPTION_HEIGHT: f32 = 22.0;
const AXIS_BOTTOM: f32 = 40.0;
const CAPTION_FONT: f32 = 11.0;
const LABEL_FONT: f32 = 10.0;
/// About ten contour levels at round values.
const LEVELS: usize = 10;
const PATH_WIDTH: f32 = 2.0;
const HALO_WIDTH: f32 = 4.5;
const MARKER_RADIUS: f32 = 3.0;
const HATCH_DARK: Colour = [175, 175, 175];
const HATCH_LIGHT: Colour = [238, 238, 238];
const WHITE: Colour = [255, 255, 255];
const BLACK: Colour = [0, 0, 0];
/// What the colour map shows.
const Z_NAME: &str = "loss";

/// A loss landscape: `values` holds the loss z at every grid point, row-major with
/// `ys.len()` rows of `xs.len()` values (row `j` at `ys[j]`, column `i` at `xs[i]`);
/// `xs` and `ys` ascend. The plot keeps the grid's aspect ratio (one unit is as long
/// across as up, unless the grid is more than twice as wide as high or the other way).
///
/// z is drawn as a filled viridis map (dark is low), interpolated bilinearly between
/// grid points, with a colour bar; grid cells with a non-finite corner are hatched grey.
/// Contour lines at about ten round levels are drawn by marching squares, dark on the
/// bright part of the map and white on the dark part, each level labelled once on its
/// longest line where the label fits. A black-and-white marker sits at (0, 0), the
/// checkpoint, when it is inside the grid. Each path is a polyline in its own colour
/// (on a white halo, so it shows on any part of the map), with a marker per point (the
/// first one open, the last one larger) and its point labels; parts outside the grid
/// are cut off at its edge. The alt text gives the z range and levels, where the
/// minimum is, z at the checkpoint, and where each path starts and ends.
///
/// Errors: [`RenderError::BadData`] for fewer than two `xs` or `ys`, coordinates that
/// are not finite or not strictly ascending, a value count that is not
/// `ys.len() × xs.len()`, no finite value, or a path with no points, a point that is not
/// finite, or a label count that is neither 0 nor the point count.
#[allow(clippy::too_many_arguments)]
pub fn contour_plot(
    title: &str,
    xs: &[f64],
    ys: &[f64],
    values: &[f64],
    paths: &[PlotPath<'_>],
    x_label: &str,
    y_label: &str,
    format: Format,
) -> Result<Figure, RenderError> {
    let (scene, alt_text) = contour_scene(title, xs, ys, values, paths, x_label, y_label)?;
    encode(&scene, format, alt_text)
}

fn validate(xs: &[f64], ys: &[f64], values: &[f64], paths: &[PlotPath<'_>]) -> Result<(), RenderError> {
    for (name, coordinates) in [("xs", xs), ("ys", ys)] {
        if coordinates.len() < 2 {
            return Err(RenderError::BadData(format!("a contour plot needs at least 2 {name}, got {}", coordinates.len())));
        }
        if let Some((index, value)) = coordinates.iter().enumerate().find(|(_, value)| !value.is_finite()) {
            return Err(RenderError::BadData(format!("{name}[{index}] is not finite ({value})")));
        }
        if let Some(index) = (1..coordinates.len()).find(|&index| coordinates[index] <= coordinates[index - 1]) {
            return Err(RenderError::BadData(format!(
                "{name} must be strictly ascending: {name}[{index}] = {} follows {}",
                coordinates[index],
                coordinates[index - 1]
            )));
        }
    }
    if values.len() != xs.len() * ys.len() {
        return Err(RenderError::BadData(format!(
            "a contour plot of {} ys × {} xs needs {} values (row-major, one row per y), got {}",
            ys.len(),
            xs.len(),
            xs.len() * ys.len(),
            values.len()
        )));
    }
    if !values.iter().any(|value| value.is_finite()) {
        return Err(RenderError::BadData("the contour plot has no finite value to draw".to_string()));
    }
    for path in paths {
        if path.points.is_empty() {
            return Err(RenderError::BadData(format!("path {:?} has no points", path.name)));
        }
        if let Some((index, point)) = path.points.iter().enumerate().find(|(_, (x, y))| !(x.is_finite() && y.is_finite())) {
            return Err(RenderError::BadData(format!("path {:?} has a point that is not finite ({point:?}) at {index}", path.name)));
        }
        if !path.point_labels.is_empty() && path.point_labels.len() != path.points.len() {
            return Err(RenderError::BadData(format!(
                "path {:?} has {} for {}; give one per point or none",
                path.name,
                counted(path.point_labels.len(), "point label"),
                counted(path.points.len(), "point")
            )));
        }
    }
    Ok(())
}

/// The grid of z values with its coordinates.
struct Grid<'a> {
    xs: &'a [f64],
    ys: &'a [f64],
    values: &'a [f64],
}

impl Grid<'_> {
    fn at(&self, column: usize, row: usize) -> f64 {
        self.values[row * self.xs.len() + column]
    }

    /// The cell (column, row of its lower-left corner) holding `coordinate`, and where
    /// it lies across the cell (0..=1); `None` outside the grid.
    fn locate(coordinates: &[f64], coordinate: f64) -> Option<(usize, f64)> {
        let last = coordinates.len() - 1;
        if !(coordinates[0]..=coordinates[last]).contains(&coordinate) {
            return None;
        }
        let index = coordinates.partition_point(|&grid| grid <= coordinate).clamp(1, last) - 1;
        Some((index, (coordinate - coordinates[index]) / (coordinates[index + 1] - coordinates[index])))
    }

    /// z at (`x`, `y`), bilinear between the four grid points around it; `None` outside
    /// the grid or when one of them is not finite.
    fn interpolate(&self, x: f64, y: f64) -> Option<f64> {
        let (column, fx) = Grid::locate(self.xs, x)?;
        let (row, fy) = Grid::locate(self.ys, y)?;
        let corners = [self.at(column, row), self.at(column + 1, row), self.at(column, row + 1), self.at(column + 1, row + 1)];
        if !corners.iter().all(|value| value.is_finite()) {
            return None;
        }
        let bottom = corners[0] * (1.0 - fx) + corners[1] * fx;
        let top = corners[2] * (1.0 - fx) + corners[3] * fx;
        Some(bottom * (1.0 - fy) + top * fy)
    }

    /// The contour lines of `level` in data coordinates.
    fn contour(&self, level: f64) -> Vec<Vec<(f64, f64)>> {
        let (columns, rows) = (self.xs.len(), self.ys.len());
        // An edge between grid points: horizontal from (column, row) to (column + 1, row)
        // or vertical from (column, row) to (column, row + 1).
        type Edge = (bool, usize, usize);
        let crossing = |(horizontal, column, row): Edge| -> (f64, f64) {
            let (to_column, to_row) = if horizontal { (column + 1, row) } else { (column, row + 1) };
            let (from_z, to_z) = (self.at(column, row), self.at(to_column, to_row));
            let t = ((level - from_z) / (to_z - from_z)).clamp(0.0, 1.0);
            let (x0, y0) = (self.xs[column], self.ys[row]);
            let (x1, y1) = (self.xs[to_column], self.ys[to_row]);
            (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
        };
        let mut segments: Vec<(Edge, Edge)> = Vec::new();
        for row in 0..rows - 1 {
            for column in 0..columns - 1 {
                // Corners counter-clockwise from the lower left.
                let z = [self.at(column, row), self.at(column + 1, row), self.at(column + 1, row + 1), self.at(column, row + 1)];
                if !z.iter().all(|value| value.is_finite()) {
                    continue;
                }
                let above = z.map(|value| value >= level);
                // Edges in the same order: bottom, right, top, left.
                let edges: [Edge; 4] = [(true, column, row), (false, column + 1, row), (true, column, row + 1), (false, column, row)];
                let crossed: Vec<usize> = (0..4).filter(|&edge| above[edge] != above[(edge + 1) % 4]).collect();
                match crossed.len() {
                    2 => segments.push((edges[crossed[0]], edges[crossed[1]])),
                    4 => {
                        // A saddle: the mean of the corners decides which opposite pair of
                        // corners is joined; the other two are cut off, each by the two
                        // edges that meet at it (corner k sits between edges k - 1 and k).
                        let centre_above = z.iter().sum::<f64>() / 4.0 >= level;
                        let cut = if above[0] == centre_above { [1, 3] } else { [0, 2] };
                        for corner in cut {
                            segments.push((edges[(corner + 3) % 4], edges[corner]));
                        }
                    }
                    _ => {}
                }
            }
        }
        // Join segments that share an edge into polylines.
        let mut by_edge: HashMap<Edge, Vec<usize>> = HashMap::new();
        for (index, (a, b)) in segments.iter().enumerate() {
            by_edge.entry(*a).or_default().push(index);
            by_edge.entry(*b).or_default().push(index);
        }
        let mut used = vec![false; segments.len()];
        let mut lines = Vec::new();
        for start in 0..segments.len() {
            if used[start] {
                continue;
            }
            used[start] = true;
            let mut chain: std::collections::VecDeque<Edge> = [segments[start].0, segments[start].1].into_iter().collect();
            // Grow forwards from the last edge, then backwards from the first.
            for forwards in [true, false] {
                loop {
                    let end = if forwards { chain[chain.len() - 1] } else { chain[0] };
                    let next = by_edge[&end].iter().copied().find(|&index| !used[index]);
                    let Some(next) = next else { break };
                    used[next] = true;
                    let (a, b) = segments[next];
                    let other = if a == end { b } else { a };
                    if forwards {
                        chain.push_back(other);
                    } else {
                        chain.push_front(other);
                    }
                }
            }
            lines.push(chain.into_iter().map(crossing).collect());
        }
        lines
    }
}

/// Round levels strictly between `low` and `high`, labelled: about [`LEVELS`] of them
/// (round steps come in factors of 2 and 2.5, so a range can get as few as 6; a finer
/// step is taken then).
fn contour_levels(low: f64, high: f64) -> Vec<(f64, String)> {
    if high <= low {
        return Vec::new();
    }
    let levels = |target: usize| {
        let ticks = nice_ticks(low, high, target);
        let labels = tick_labels(&ticks);
        ticks.values.iter().copied().zip(labels).filter(|&(level, _)| level > low && level < high).collect::<Vec<_>>()
    };
    let levels_at_target = levels(LEVELS);
    if levels_at_target.len() >= 7 {
        levels_at_target
    } else {
        levels(LEVELS * 3 / 2)
    }
}

/// An axis-aligned box in pixels: left, top, right, bottom.
type Box2 = (f32, f32, f32, f32);

fn overlaps(a: Box2, b: Box2) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// The parts of segment `a`–`b` inside `bounds` (Liang–Barsky).
fn clip_segment(a: (f32, f32), b: (f32, f32), bounds: Box2) -> Option<((f32, f32), (f32, f32))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f32, 1.0f32);
    for (p, q) in [(-dx, a.0 - bounds.0), (dx, bounds.2 - a.0), (-dy, a.1 - bounds.1), (dy, bounds.3 - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f32| (a.0 + dx * t, a.1 + dy * t);
    Some((if t0 == 0.0 { a } else { at(t0) }, if t1 == 1.0 { b } else { at(t1) }))
}

/// The polyline through `points` cut to `bounds`: the runs inside it.
fn clip_polyline(points: &[(f32, f32)], bounds: Box2) -> Vec<Vec<(f32, f32)>> {
    let mut runs: Vec<Vec<(f32, f32)>> = Vec::new();
    let mut joined = false;
    for pair in points.windows(2) {
        let Some((from, to)) = clip_segment(pair[0], pair[1], bounds) else {
            joined = false;
            continue;
        };
        match runs.last_mut() {
            Some(run) if joined && from == pair[0] => run.push(to),
            _ => runs.push(vec![from, to]),
        }
        joined = to == pair[1];
    }
    runs
}

/// A point along `line` (pixels) at `fraction` of its length.
fn point_along(line: &[(f32, f32)], fraction: f32) -> (f32, f32) {
    let lengths: Vec<f32> = line.windows(2).map(|pair| ((pair[1].0 - pair[0].0).powi(2) + (pair[1].1 - pair[0].1).powi(2)).sqrt()).collect();
    let mut remaining = lengths.iter().sum::<f32>() * fraction;
    for (pair, &length) in line.windows(2).zip(&lengths) {
        if remaining <= length && length > 0.0 {
            let t = remaining / length;
            return (pair[0].0 + (pair[1].0 - pair[0].0) * t, pair[0].1 + (pair[1].1 - pair[0].1) * t);
        }
        remaining -= length;
    }
    line[line.len() - 1]
}

fn length(line: &[(f32, f32)]) -> f32 {
    line.windows(2).map(|pair| ((pair[1].0 - pair[0].0).powi(2) + (pair[1].1 - pair[0].1).powi(2)).sqrt()).sum()
}

/// The checkpoint's marker: black on a white ring with a white centre, unlike any path
/// marker.
fn checkpoint_marker(scene: &mut Scene, centre: (f32, f32)) {
    scene.push(Element::Circle { centre, radius: 6.5, fill: WHITE });
    scene.push(Element::Circle { centre, radius: 5.0, fill: BLACK });
    scene.push(Element::Circle { centre, radius: 2.0, fill: WHITE });
}

fn contour_scene(
    title: &str,
    xs: &[f64],
    ys: &[f64],
    values: &[f64],
    paths: &[PlotPath<'_>],
    x_label: &str,
    y_label: &str,
) -> Result<(Scene, String), RenderError> {
    validate(xs, ys, values, paths)?;
    let grid = Grid { xs, ys, values };
    let finite = || values.iter().copied().filter(|value| value.is_finite());
    let (z_low, z_high) = (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max));
    let z_fraction = |z: f64| if z_high > z_low { (z - z_low) / (z_high - z_low) } else { 0.5 };
    let levels = contour_levels(z_low, z_high);

    // Plot size: the grid's aspect ratio, within 1:2 and 2:1.
    let (x_low, x_high, y_low, y_high) = (xs[0], xs[xs.len() - 1], ys[0], ys[ys.len() - 1]);
    let aspect = ((y_high - y_low) / (x_high - x_low)) as f32;
    let (plot_width, plot_height) =
        if aspect <= 1.0 { (PLOT_SIDE, (PLOT_SIDE * aspect).max(MIN_PLOT_SIDE)) } else { ((PLOT_SIDE / aspect).max(MIN_PLOT_SIDE), PLOT_SIDE) };
    let x_ticks = ticks_within(x_low, x_high, 6);
    let y_ticks = ticks_within(y_low, y_high, 6);
    let widest_y_tick = y_ticks.iter().map(|(_, label)| text_width(label, TICK_FONT)).fold(0.0, f32::max);
    let x_fraction = |x: f64| ((x - x_low) / (x_high - x_low)) as f32;
    let first_x_overhang = x_ticks.first().map_or(0.0, |(tick, label)| text_width(label, TICK_FONT) / 2.0 - x_fraction(*tick) * plot_width);
    let left = MIN_AXIS_LEFT.max(widest_y_tick + 12.0).max(first_x_overhang + 2.0).ceil();

    // Legend above: every path, and the checkpoint when it is on the plot.
    let checkpoint = (0.0, 0.0);
    let checkpoint_inside = (x_low..=x_high).contains(&checkpoint.0) && (y_low..=y_high).contains(&checkpoint.1);
    let mut legend_names: Vec<&str> = paths.iter().map(|path| path.name).collect();
    if checkpoint_inside {
        legend_names.push("checkpoint (0, 0)");
    }
    let legend = legend_layout(legend_names.iter().copied(), plot_width.max(360.0));
    let plot_top = legend_height(&legend) + CAPTION_HEIGHT;
    let plot_bottom = plot_top + plot_height;
    let bounds: Box2 = (left, plot_top, left + plot_width, plot_bottom);
    let x_of = |x: f64| left + x_fraction(x) * plot_width;
    let y_of = |y: f64| plot_bottom - ((y - y_low) / (y_high - y_low)) as f32 * plot_height;

    let colour_at = |fraction: f64| viridis(fraction);
    let colour_bar = ColourBar {
        colour_at: &colour_at,
        ticks: levels.iter().map(|(level, label)| (z_fraction(*level), label.clone())).collect(),
        band: None,
        levels: levels.iter().map(|(level, _)| z_fraction(*level)).collect(),
        caption: Z_NAME,
    };
    let colour_bar = if levels.len() >= 2 {
        colour_bar
    } else {
        // Too few levels to label the bar: label its ends.
        ColourBar { ticks: vec![(0.0, format_value(z_low as f32)), (1.0, format_value(z_high as f32))], ..colour_bar }
    };
    let bar_left = left + plot_width + 24.0;
    let width = (bar_left + colour_bar.width(plot_height)).max(left + plot_width + 14.0).ceil();
    let legend_width = legend.iter().zip(&legend_names).map(|(&(x, _), name)| x + 27.0 + text_width(name, 11.0)).fold(0.0, f32::max);
    let width = width.max((left + legend_width + 4.0).ceil());
    let mut scene = Scene::new(width, (plot_bottom + AXIS_BOTTOM).ceil());

    // The filled map: each pixel's centre interpolated from the grid.
    let picture = RgbaImage::from_fn(plot_width.round() as u32, plot_height.round() as u32, |px, py| {
        let x = x_low + (px as f64 + 0.5) / plot_width as f64 * (x_high - x_low);
        let y = y_high - (py as f64 + 0.5) / plot_height as f64 * (y_high - y_low);
        let [r, g, b] = match grid.interpolate(x, y) {
            Some(z) => viridis(z_fraction(z)),
            None if (px + py) % 6 < 2 => HATCH_DARK,
            None => HATCH_LIGHT,
        };
        Rgba([r, g, b, 255])
    });
    scene.push(Element::Image { x: left, y: plot_top, image: picture, label: "loss landscape".to_string() });

    // Contour lines, dark on the bright part of the map and white on the dark part.
    let mut contour_lines: Vec<(usize, Vec<(f32, f32)>)> = Vec::new();
    for (index, (level, _)) in levels.iter().enumerate() {
        let colour = if luminance(viridis(z_fraction(*level))) > 0.45 { TEXT } else { WHITE };
        for line in grid.contour(*level) {
            let pixels: Vec<(f32, f32)> = line.iter().map(|&(x, y)| (x_of(x), y_of(y))).collect();
            scene.push(Element::Polyline { points: pixels.clone(), colour, width: 1.0 });
            contour_lines.push((index, pixels));
        }
    }

    // Where labels go: path point labels first (they say most), then one label per
    // contour level on its longest line, each where it overlaps nothing placed before.
    let mut taken: Vec<Box2> = Vec::new();
    let path_pixels: Vec<Vec<(f32, f32)>> = paths.iter().map(|path| path.points.iter().map(|&(x, y)| (x_of(x), y_of(y))).collect()).collect();
    let inside = |point: (f32, f32)| point.0 >= bounds.0 && point.0 <= bounds.2 && point.1 >= bounds.1 && point.1 <= bounds.3;
    for pixels in &path_pixels {
        for &point in pixels.iter().filter(|&&point| inside(point)) {
            taken.push((point.0 - 4.0, point.1 - 4.0, point.0 + 4.0, point.1 + 4.0));
        }
    }
    if checkpoint_inside {
        let centre = (x_of(0.0), y_of(0.0));
        taken.push((centre.0 - 7.0, centre.1 - 7.0, centre.0 + 7.0, centre.1 + 7.0));
    }
    let mut point_labels: Vec<(f32, f32, String)> = Vec::new();
    for (path, pixels) in paths.iter().zip(&path_pixels) {
        let count = path.point_labels.len();
        // The first and the last label, then the ones between.
        let ends = if count > 1 { vec![0, count - 1] } else { (0..count).collect() };
        for index in ends.into_iter().chain(1..count.saturating_sub(1)) {
            let point = pixels[index];
            if !inside(point) || path.point_labels[index].is_empty() {
                continue;
            }
            let label_width = text_width(&path.point_labels[index], LABEL_FONT) + 4.0;
            // Right and up of the point, then the other corners, clear of its marker and
            // of the checkpoint's.
            let candidates = [(8.0, -17.0), (8.0, 4.0), (-8.0 - label_width, -17.0), (-8.0 - label_width, 4.0)];
            let placed =
                candidates.iter().map(|&(dx, dy)| (point.0 + dx, point.1 + dy, point.0 + dx + label_width, point.1 + dy + 13.0)).find(|&candidate| {
                    candidate.0 >= bounds.0
                        && candidate.2 <= bounds.2
                        && candidate.1 >= bounds.1
                        && candidate.3 <= bounds.3
                        && !taken.iter().any(|&box2| overlaps(box2, candidate))
                });
            if let Some(placed) = placed {
                taken.push(placed);
                point_labels.push((placed.0, placed.1, path.point_labels[index].clone()));
            }
        }
    }
    let mut level_labels: Vec<(Box2, usize)> = Vec::new();
    for (index, (_, label)) in levels.iter().enumerate() {
        let mut lines: Vec<&Vec<(f32, f32)>> = contour_lines.iter().filter(|(level, _)| *level == index).map(|(_, line)| line).collect();
        lines.sort_by(|a, b| length(b).total_cmp(&length(a)));
        let label_width = text_width(label, LABEL_FONT) + 4.0;
        let spot = lines.iter().filter(|line| length(line) > 2.0 * label_width).find_map(|line| {
            [0.5, 0.3, 0.7, 0.15, 0.85]
                .iter()
                .map(|&fraction| point_along(line, fraction))
                .map(|(x, y)| (x - label_width / 2.0, y - 7.0, x + label_width / 2.0, y + 6.0))
                .find(|&candidate| {
                    candidate.0 >= bounds.0 + 2.0
                        && candidate.2 <= bounds.2 - 2.0
                        && candidate.1 >= bounds.1 + 2.0
                        && candidate.3 <= bounds.3 - 2.0
                        && !taken.iter().any(|&box2| overlaps(box2, candidate))
                })
        });
        if let Some(spot) = spot {
            taken.push(spot);
            level_labels.push((spot, index));
        }
    }
    // Level labels sit on a patch of their level's colour, hiding the line under them.
    for ((left_edge, top, right_edge, bottom), index) in level_labels {
        let (level, label) = &levels[index];
        let fill = viridis(z_fraction(*level));
        scene.push(Element::Rect { x: left_edge, y: top, width: right_edge - left_edge, height: bottom - top, fill });
        let colour = if luminance(fill) > 0.45 { TEXT } else { WHITE };
        scene.push(Element::Text {
            x: (left_edge + right_edge) / 2.0,
            y: bottom - 3.0,
            text: label.clone(),
            size: LABEL_FONT,
            anchor: Anchor::Middle,
            colour,
            rotation: 0.0,
        });
    }

    // Paths over the map: a white halo, then the line, cut to the plot; markers inside.
    let mut outside_points = vec![0usize; paths.len()];
    for (index, pixels) in path_pixels.iter().enumerate() {
        let colour = series_colour(index);
        let runs = clip_polyline(pixels, bounds);
        for run in &runs {
            scene.push(Element::Polyline { points: run.clone(), colour: WHITE, width: HALO_WIDTH });
        }
        for run in runs {
            scene.push(Element::Polyline { points: run, colour, width: PATH_WIDTH });
        }
        let last = pixels.len() - 1;
        for (point_index, &point) in pixels.iter().enumerate() {
            if !inside(point) {
                outside_points[index] += 1;
                continue;
            }
            if point_index == 0 && last > 0 {
                scene.push(Element::Circle { centre: point, radius: MARKER_RADIUS + 2.0, fill: WHITE });
                scene.push(Element::Circle { centre: point, radius: MARKER_RADIUS + 1.0, fill: colour });
                scene.push(Element::Circle { centre: point, radius: MARKER_RADIUS - 0.5, fill: WHITE });
            } else if point_index == last {
                marker(&mut scene, point, MARKER_RADIUS + 1.5, colour);
            } else {
                marker(&mut scene, point, MARKER_RADIUS, colour);
            }
        }
    }
    for (x, y, text) in point_labels {
        let label_width = text_width(&text, LABEL_FONT) + 4.0;
        scene.push(Element::Rect { x, y, width: label_width, height: 13.0, fill: WHITE });
        scene.text(x + 2.0, y + 10.0, text, LABEL_FONT, Anchor::Start);
    }
    if checkpoint_inside {
        checkpoint_marker(&mut scene, (x_of(0.0), y_of(0.0)));
    }

    // Frame, axes, captions, legend, colour bar.
    scene.line((left - 0.5, plot_top - 0.5), (left + plot_width + 0.5, plot_top - 0.5), AXIS, 1.0);
    scene.line((left - 0.5, plot_bottom + 0.5), (left + plot_width + 0.5, plot_bottom + 0.5), AXIS, 1.0);
    scene.line((left - 0.5, plot_top - 0.5), (left - 0.5, plot_bottom + 0.5), AXIS, 1.0);
    scene.line((left + plot_width + 0.5, plot_top - 0.5), (left + plot_width + 0.5, plot_bottom + 0.5), AXIS, 1.0);
    for (tick, label) in &x_ticks {
        let x = x_of(*tick).round() + 0.5;
        scene.line((x, plot_bottom + 1.0), (x, plot_bottom + 5.0), AXIS, 1.0);
        scene.text(x, plot_bottom + 16.0, label.as_str(), TICK_FONT, Anchor::Middle);
    }
    for (tick, label) in &y_ticks {
        let y = y_of(*tick).round() + 0.5;
        scene.line((left - 5.0, y), (left - 1.0, y), AXIS, 1.0);
        scene.text(left - 7.0, y + 3.5, label.as_str(), TICK_FONT, Anchor::End);
    }
    scene.text(left + plot_width / 2.0, plot_bottom + AXIS_BOTTOM - 6.0, x_label, CAPTION_FONT, Anchor::Middle);
    scene.text(left, plot_top - 9.0, y_label, CAPTION_FONT, Anchor::Start);
    for (index, (&(x, row), name)) in legend.iter().zip(&legend_names).enumerate() {
        let top = row as f32 * LEGEND_ROW;
        if index < paths.len() {
            legend_entry(&mut scene, (left + x, top), name, series_colour(index), PATH_WIDTH, MARKER_RADIUS);
        } else {
            checkpoint_marker(&mut scene, (left + x + 11.0, top + 9.0));
            scene.text(left + x + 27.0, top + 13.0, *name, 11.0, Anchor::Start);
        }
    }
    scene.place(colour_bar.draw(plot_height), bar_left, plot_top);

    let alt_text = alt_text(title, &grid, paths, x_label, y_label, (z_low, z_high), &levels, checkpoint_inside, &outside_points);
    Ok((compose(title, "", vec![(title.to_string(), scene)]), alt_text))
}

#[allow(clippy::too_many_arguments)]
fn alt_text(
    title: &str,
    grid: &Grid<'_>,
    paths: &[PlotPath<'_>],
    x_label: &str,
    y_label: &str,
    (z_low, z_high): (f64, f64),
    levels: &[(f64, String)],
    checkpoint_inside: bool,
    outside_points: &[usize],
) -> String {
    let value = |value: f64| format_value(value as f32);
    let point = |(x, y): (f64, f64)| format!("({}, {})", value(x), value(y));
    let (columns, rows) = (grid.xs.len(), grid.ys.len());
    let minimum = (0..grid.values.len()).filter(|&index| grid.values[index].is_finite()).fold(None, |best: Option<usize>, index| {
        if best.is_none_or(|best| grid.values[index] < grid.values[best]) {
            Some(index)
        } else {
            best
        }
    });
    let minimum = minimum.map_or_else(String::new, |index| {
        format!("; lowest {} at {}", value(grid.values[index]), point((grid.xs[index % columns], grid.ys[index / columns])))
    });
    let mut text = format!(
        "{title}: {Z_NAME} landscape over {x_label} from {} to {} and {y_label} from {} to {} ({columns} × {rows} grid); {Z_NAME} from {} to {}{minimum}.",
        value(grid.xs[0]),
        value(grid.xs[columns - 1]),
        value(grid.ys[0]),
        value(grid.ys[rows - 1]),
        value(z_low),
        value(z_high),
    );
    if let (Some(first), Some(last)) = (levels.first(), levels.last()) {
        text.push_str(&format!(" Contour lines at {} from {} to {}.", counted(levels.len(), "level"), first.1, last.1));
    }
    let missing = grid.values.iter().filter(|value| !value.is_finite()).count();
    if missing > 0 {
        text.push_str(&format!(" {} not finite (hatched cells).", counted(missing, "grid value")));
    }
    let z_at = |(x, y): (f64, f64)| grid.interpolate(x, y).map(|z| format!("{Z_NAME} {}", value(z)));
    if checkpoint_inside {
        text.push_str(&format!(" Checkpoint at (0, 0){}.", z_at((0.0, 0.0)).map_or_else(String::new, |z| format!(", {z}"))));
    } else {
        text.push_str(" The checkpoint (0, 0) is outside the grid.");
    }
    for (path, &outside) in paths.iter().zip(outside_points) {
        // A point, with its label and z in brackets where it has them.
        let labelled = |index: usize| {
            let label = path.point_labels.get(index).filter(|label| !label.is_empty()).cloned();
            let (x, y) = path.points[index];
            let off_grid = !((grid.xs[0]..=grid.xs[columns - 1]).contains(&x) && (grid.ys[0]..=grid.ys[rows - 1]).contains(&y));
            let notes: Vec<String> =
                label.into_iter().chain(z_at(path.points[index])).chain(off_grid.then(|| "outside the grid".to_string())).collect();
            let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
            format!("{}{notes}", point(path.points[index]))
        };
        let last = path.points.len() - 1;
        let outside = match outside {
            0 => String::new(),
            count => format!("; {} outside the plot", counted(count, "point")),
        };
        text.push_str(&format!(" Path {}: {} from {} to {}{outside}.", path.name, counted(path.points.len(), "point"), labelled(0), labelled(last)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bowl z = x² + y² on a square grid from -2 to 2.
    fn bowl(steps: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let axis: Vec<f64> = (0..steps).map(|index| -2.0 + 4.0 * index as f64 / (steps - 1) as f64).collect();
        let values = axis.iter().flat_map(|&y| axis.iter().map(move |&x| x * x + y * y)).collect();
        (axis.clone(), axis, values)
    }

    #[test]
    fn contours_of_a_bowl_are_closed_circles() {
        let (xs, ys, values) = bowl(41);
        let grid = Grid { xs: &xs, ys: &ys, values: &values };
        let lines = grid.contour(1.0);
        assert_eq!(lines.len(), 1, "one closed line");
        let line = &lines[0];
        assert!(line.first() == line.last(), "closed: {:?} {:?}", line.first(), line.last());
        for &(x, y) in line {
            let radius = (x * x + y * y).sqrt();
            assert!((radius - 1.0).abs() < 0.01, "({x}, {y}) is {radius} from the centre");
        }
        // A level off the map has no line.
        assert!(grid.contour(100.0).is_empty());
        assert_eq!(grid.interpolate(0.0, 0.0), Some(0.0));
        assert_eq!(grid.interpolate(3.0, 0.0), None);
    }

    #[test]
    fn about_ten_round_levels() {
        let labels = |low, high| contour_levels(low, high).into_iter().map(|(_, label)| label).collect::<Vec<_>>();
        assert_eq!(labels(0.0, 10.0), ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        // Step 1 would give 6 levels: a step of 0.5 gives 13.
        assert_eq!(labels(0.21, 6.91).len(), 13);
        assert!(labels(2.0, 2.0).is_empty());
    }

    #[test]
    fn saddles_split_by_the_centre() {
        // Corners 1 (lower left), 0 (lower right), 1 (upper right), 0 (upper left): a
        // saddle at level 0.5.
        let (xs, ys) = ([0.0, 1.0], [0.0, 1.0]);
        let values = [1.0, 0.0, 0.0, 1.0];
        let grid = Grid { xs: &xs, ys: &ys, values: &values };
        // Mean 0.5 counts as above: the two high corners join, the low ones are cut off,
        // each by a segment between its two edges.
        let mut lines = grid.contour(0.5);
        lines.sort_by(|a, b| a[0].0.total_cmp(&b[0].0).then(a[0].1.total_cmp(&b[0].1)));
        assert_eq!(lines, vec![vec![(0.5, 0.0), (1.0, 0.5)], vec![(0.5, 1.0), (0.0, 0.5)]]);
    }

    #[test]
    fn paths_are_cut_at_the_plot_edge() {
        let bounds = (0.0, 0.0, 10.0, 10.0);
        assert_eq!(
            clip_polyline(&[(5.0, 5.0), (15.0, 5.0), (15.0, 8.0), (5.0, 8.0)], bounds),
            vec![vec![(5.0, 5.0), (10.0, 5.0)], vec![(10.0, 8.0), (5.0, 8.0)]]
        );
        assert!(clip_polyline(&[(-5.0, -5.0), (-1.0, 20.0)], bounds).is_empty());
        assert_eq!(clip_polyline(&[(-10.0, 5.0), (20.0, 5.0)], bounds), vec![vec![(0.0, 5.0), (10.0, 5.0)]]);
    }
}
