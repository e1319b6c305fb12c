//! The model-graph figure: a model's forward pass as boxes and arrows, tensor shapes
//! written on the edges, boxes grouped into frames by the module call they sit in.
//!
//! The figure is drawn from plain data (operations in execution order, each with the
//! stack of module calls it ran in; edges with the shape of the tensor that flows), so
//! the daemon can hand in what its tracer recorded and nothing here knows libtorch. It is
//! laid out in Rust (`graph_layout.rs`), with no `dot` binary. Two options keep big
//! models readable, as torchview's `depth` and the feature its users ask for most:
//!
//! - `depth`: every module call deeper than `depth` is folded into the box of its
//!   enclosing call at that depth (labelled with the module type and path); edges inside
//!   the box disappear, edges crossing its border keep their shapes, and duplicates
//!   between the same two boxes merge;
//! - `collapse_repeats`: consecutive sibling calls with the same structure (same module
//!   types, the same sequence of op labels and details, the same edge pattern and shapes
//!   inside and at the border; paths do not count) are drawn once, marked `×N` with the
//!   range of paths, as a box or as a frame.
//!
//! A module call of a single op (a leaf module such as `Conv2d`) is drawn as that op, whose
//! label and detail say more than the module type would, named by its path. Every other
//! module call that still holds more than one box is drawn as a rounded frame labelled
//! `path: Type` around its boxes, nested as the calls are.

use crate::colour::Colour;
use crate::figure::encode;
use crate::font::text_width;
use crate::graph_layout::{self, ClusterInput, LayoutInput, Member, Rect, Size};
use crate::scene::{Anchor, Element, Scene};
use crate::{Figure, Format, RenderError};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// One operation (or leaf module call) of a model's forward pass, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    pub id: usize,
    /// What it is: a module type (`Conv2d`) or an op (`add`, `flatten`, `cat`).
    pub label: String,
    /// Extra text for the box: `3×3, stride 2`, `64→128` (may be empty).
    pub detail: String,
    /// The module calls this node sits in, outermost first: each (module path, module
    /// type, call index). E.g. `[("layer1", "Sequential", 0), ("layer1.0", "BasicBlock",
    /// 0), ("layer1.0.conv1", "Conv2d", 0)]`. Empty for ops in the root forward. The call
    /// index distinguishes two calls of one module.
    pub scopes: Vec<(String, String, u32)>,
}

/// A tensor flowing from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEdge {
    pub from: usize,
    pub to: usize,
    /// Shape of the tensor flowing, e.g. `[1, 64, 56, 56]`.
    pub shape: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelGraph {
    pub title: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Model inputs as (name, shape, ids of the nodes they feed).
    pub inputs: Vec<(String, Vec<i64>, Vec<usize>)>,
    /// Model outputs as (name, shape, id of the node that produces it).
    pub outputs: Vec<(String, Vec<i64>, usize)>,
}

/// What the graph figure shows. The default shows every op and no `×N` boxes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphOptions {
    /// Collapse every module call deeper than this into one box (None: show leaf ops).
    /// Top-level module calls are at depth 1.
    pub depth: Option<u32>,
    /// Collapse runs of structurally identical sibling blocks into one "×N" box.
    pub collapse_repeats: bool,
    /// An interactive view's open module calls, by path: when set, every call not in it
    /// is folded into one box (as if it were at the collapse depth), so a viewer opens
    /// and closes frames one at a time. The root forward is always open.
    pub open: Option<BTreeSet<String>>,
    /// Module calls (by path; "" for the root forward) whose children are drawn one by
    /// one even where `collapse_repeats` would fold a run of them into one `×N` box.
    pub unfold_repeats: BTreeSet<String>,
}

/// The graph laid out for an interactive viewer: what [`graph_figure`] draws, as data.
/// Coordinates are pixels from the drawing's top-left corner, y downwards.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphLayout {
    pub width: f32,
    pub height: f32,
    pub boxes: Vec<LaidOutBox>,
    /// Module-call frames, outermost first.
    pub frames: Vec<LaidOutFrame>,
    pub edges: Vec<LaidOutEdge>,
    /// The figure's alt text (see [`graph_figure`]).
    pub alt_text: String,
}

/// What a box stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxRole {
    /// A leaf module call (one op), drawn as its op.
    Module,
    /// A functional op in some module's forward.
    Op,
    /// A module call folded into one box (maybe the first of a `×N` run).
    Folded,
    Input,
    Output,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaidOutBox {
    pub role: BoxRole,
    pub title: String,
    /// Smaller lines below the title (path, detail).
    pub lines: Vec<String>,
    /// The module call it stands for (leaf and folded calls), else the innermost call it
    /// runs in ("" for the root forward, and for inputs and outputs).
    pub path: String,
    /// The graph's nodes it holds (none for inputs and outputs).
    pub node_ids: Vec<usize>,
    /// How many calls a `×N` box stands for; 1 otherwise.
    pub repeats: u32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaidOutFrame {
    /// The open module call it frames.
    pub path: String,
    /// `path: Type` (with the range and `×N` of a repeated run).
    pub label: String,
    /// 1 for a frame in no other frame.
    pub depth: u32,
    /// How many calls it stands for, when it frames the first of a `×N` run; else 1.
    pub repeats: u32,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    /// Where the label starts, from the frame's left side.
    pub label_x: f32,
}

/// An arrow, from the bottom of one box to the top of another, as a polyline.
#[derive(Debug, Clone, PartialEq)]
pub struct LaidOutEdge {
    pub from: usize,
    pub to: usize,
    pub points: Vec<(f32, f32)>,
    pub shape: Option<Vec<i64>>,
}

/// The model graph as a figure: boxes top to bottom in execution order, arrows with the
/// shapes they carry, frames around module calls (see the module documentation for what
/// depth and repeats fold). The alt text reads `graph of <title>: N boxes (I inputs, O
/// outputs), M edges, depth d, K repeated runs collapsed (<paths> <Type> ×n, ...)`,
/// where N counts every box drawn, the model's inputs and outputs included.
///
/// Errors: [`RenderError::BadData`] for an empty graph, a node id used twice, an edge,
/// input or output naming an unknown node, or a cycle (named by its node ids);
/// [`RenderError::BadOptions`] for depth 0.
pub fn graph_figure(graph: &ModelGraph, options: &GraphOptions, format: Format) -> Result<Figure, RenderError> {
    let fold = Folding::new(options)?;
    let model = Model::new(graph)?;
    let arranged = arrange(&model, &fold, options.collapse_repeats)?;
    let (scene, alt_text) = graph_scene(&model, &arranged, options);
    encode(&scene, format, alt_text)
}

/// [`graph_figure`] and [`graph_layout`] of one graph with the same options, laid out
/// once.
pub fn graph_figure_and_layout(graph: &ModelGraph, options: &GraphOptions, format: Format) -> Result<(Figure, GraphLayout), RenderError> {
    let fold = Folding::new(options)?;
    let model = Model::new(graph)?;
    let arranged = arrange(&model, &fold, options.collapse_repeats)?;
    let (scene, alt_text) = graph_scene(&model, &arranged, options);
    Ok((encode(&scene, format, alt_text)?, layout_data(&model, &arranged, options)))
}

// Sizes in pixels; text sizes are CSS pixel sizes, as in the other figures.
const MARGIN: f32 = 16.0;
const TITLE_SIZE: f32 = 14.0;
const TITLE_BAND: f32 = 32.0;
const BOX_TITLE_SIZE: f32 = 12.0;
const BOX_LINE_SIZE: f32 = 10.0;
const BOX_LINE_STEP: f32 = 13.0;
const BOX_PAD_X: f32 = 10.0;
const BOX_MIN_WIDTH: f32 = 64.0;
const BOX_RADIUS: f32 = 5.0;
const CLUSTER_LABEL_SIZE: f32 = 10.5;
const CLUSTER_RADIUS: f32 = 7.0;
const SHAPE_SIZE: f32 = 9.5;
/// Space between an arrow and the shape label beside it.
const SHAPE_OFFSET: f32 = 5.0;
/// How far a `×N` box's shadow copy sits to the lower right, suggesting a stack.
const STACK_OFFSET: f32 = 4.0;
const ARROW_LENGTH: f32 = 8.0;
const ARROW_HALF_WIDTH: f32 = 3.5;

const EDGE_COLOUR: Colour = [96, 100, 112];
const SHAPE_COLOUR: Colour = [98, 104, 118];
const SUBTLE_TEXT: Colour = [84, 90, 104];
const CLUSTER_BORDER: Colour = [172, 180, 196];
/// Frame fills by nesting level, darkening inwards.
const CLUSTER_FILLS: [Colour; 4] = [[247, 248, 251], [239, 242, 247], [231, 235, 243], [223, 228, 239]];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Node(usize),
    Scope(usize),
}

/// One module call and everything that ran inside it.
struct Scope {
    path: String,
    type_name: String,
    /// 1 for a call made from the root forward.
    depth: u32,
    children: Vec<Item>,
    /// Every node inside, however deep, in execution order.
    nodes: Vec<usize>,
}

/// The validated graph in indices, with its module-call tree.
struct Model<'a> {
    graph: &'a ModelGraph,
    /// (from, to, shape) in node indices.
    edges: Vec<(usize, usize, Option<&'a [i64]>)>,
    outgoing: Vec<Vec<usize>>,
    incoming: Vec<Vec<usize>>,
    scopes: Vec<Scope>,
    root: Vec<Item>,
    /// Each node's module calls as scope indices, outermost first.
    node_scopes: Vec<Vec<usize>>,
    /// Node id → index in `graph.nodes`.
    index_of: HashMap<usize, usize>,
    /// Model input shapes feeding each node and model output shapes leaving it, so a
    /// block fed by the model input compares its border like any other.
    input_shapes: Vec<Vec<&'a [i64]>>,
    output_shapes: Vec<Vec<&'a [i64]>>,
}

/// The `×N` runs found: each run's member calls in order; the first is drawn.
struct Runs {
    runs: Vec<Vec<usize>>,
    /// Scope → (run, position in the run).
    member_of: Vec<Option<(usize, usize)>>,
    /// Node in a hidden member → the node at the same position in the run's first member.
    substitute: Vec<Option<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoxKind {
    Op(usize),
    Scope(usize),
    Input(usize),
    Output(usize),
}

/// What is drawn: boxes, frames (cluster 0 is the whole figure), arrows.
struct View {
    boxes: Vec<BoxKind>,
    /// Per cluster: the module call it frames (None for the root) and its members.
    clusters: Vec<(Option<usize>, Vec<Member>)>,
    /// Per box: the path of the innermost frame around it, to shorten names inside it.
    box_context: Vec<String>,
    /// (from box, to box, shape), merged.
    edges: Vec<(usize, usize, Option<Vec<i64>>)>,
}

impl View {
    /// Per cluster, how many frames hold it (0 for the root, 1 for a frame in no other).
    /// Clusters are created parents first.
    fn nesting(&self) -> Vec<usize> {
        let mut nesting = vec![0usize; self.clusters.len()];
        for (cluster, (_, members)) in self.clusters.iter().enumerate() {
            for member in members {
                if let Member::Cluster(child) = *member {
                    nesting[child] = nesting[cluster] + 1;
                }
            }
        }
        nesting
    }
}

/// Which module calls are drawn as one box and where runs may fold.
struct Folding<'o> {
    depth: u32,
    open: Option<&'o BTreeSet<String>>,
    unfold_repeats: &'o BTreeSet<String>,
}

impl Folding<'_> {
    fn new(options: &GraphOptions) -> Result<Folding<'_>, RenderError> {
        if options.depth == Some(0) {
            return Err(RenderError::BadOptions("graph depth must be at least 1 (top-level module calls), or None to show every op".to_string()));
        }
        Ok(Folding { depth: options.depth.unwrap_or(u32::MAX), open: options.open.as_ref(), unfold_repeats: &options.unfold_repeats })
    }

    /// Whether a viewer opened this call (of more than one op): it gets a frame to close
    /// it by, even around a single box.
    fn held_open(&self, scope: &Scope) -> bool {
        scope.nodes.len() > 1 && self.open.is_some_and(|open| open.contains(&scope.path))
    }

    /// Whether a call's contents are hidden: it is at the collapse depth, or the view
    /// does not hold it open.
    fn closed(&self, scope: &Scope) -> bool {
        scope.depth >= self.depth || self.open.is_some_and(|open| !open.contains(&scope.path))
    }
}

/// The view and its layout, before anything is drawn.
struct Arranged {
    runs: Runs,
    view: View,
    contents: Vec<(String, Vec<String>)>,
    cluster_labels: Vec<String>,
    layout: graph_layout::Layout,
}

fn arrange(model: &Model<'_>, fold: &Folding<'_>, collapse_repeats: bool) -> Result<Arranged, RenderError> {
    let runs = if collapse_repeats { model.find_runs(fold) } else { Runs::none(model.scopes.len(), model.graph.nodes.len()) };
    let view = model.view(fold, &runs)?;

    // Box contents and sizes.
    let contents: Vec<(String, Vec<String>)> = (0..view.boxes.len()).map(|index| model.box_text(&view, &runs, index)).collect();
    let sizes: Vec<Size> = contents
        .iter()
        .map(|(title, lines)| {
            let widest = lines.iter().map(|line| text_width(line, BOX_LINE_SIZE)).fold(text_width(title, BOX_TITLE_SIZE), f32::max);
            Size { width: (widest + 2.0 * BOX_PAD_X).max(BOX_MIN_WIDTH).ceil(), height: 26.0 + BOX_LINE_STEP * lines.len() as f32 }
        })
        .collect();
    let cluster_labels: Vec<String> =
        view.clusters.iter().map(|(scope, _)| scope.map(|scope| model.scope_label(&runs, scope)).unwrap_or_default()).collect();
    // Room for the shape label below each box, right of where its arrows leave.
    let mut reach = vec![0.0f32; sizes.len()];
    for (from, _, shape) in &view.edges {
        if let Some(shape) = shape {
            reach[*from] = reach[*from].max(sizes[*from].width / 2.0 + SHAPE_OFFSET + text_width(&shape_text(shape), SHAPE_SIZE).ceil() + 2.0);
        }
    }
    let input = LayoutInput {
        boxes: sizes,
        reach,
        clusters: view
            .clusters
            .iter()
            .zip(&cluster_labels)
            .map(|((scope, members), label)| ClusterInput {
                members: members.clone(),
                label: if scope.is_some() {
                    Size { width: text_width(label, CLUSTER_LABEL_SIZE).ceil(), height: 11.0 }
                } else {
                    Size { width: 0.0, height: 0.0 }
                },
            })
            .collect(),
        edges: view.edges.iter().map(|&(from, to, _)| (from, to)).collect(),
    };
    let layout = graph_layout::layout(&input);
    Ok(Arranged { runs, view, contents, cluster_labels, layout })
}

/// The graph laid out as [`graph_figure`] would draw it, as data for a viewer that draws
/// it itself (the web explorer): boxes with their text and the nodes they hold, frames,
/// arrows as polylines with their shapes. `options.open` makes frames open one at a
/// time. Errors as [`graph_figure`].
pub fn graph_layout(graph: &ModelGraph, options: &GraphOptions) -> Result<GraphLayout, RenderError> {
    let fold = Folding::new(options)?;
    let model = Model::new(graph)?;
    let arranged = arrange(&model, &fold, options.collapse_repeats)?;
    Ok(layout_data(&model, &arranged, options))
}

fn layout_data(model: &Model<'_>, arranged: &Arranged, options: &GraphOptions) -> GraphLayout {
    let Arranged { runs, view, contents, cluster_labels, layout } = arranged;
    let graph = model.graph;
    let nesting = view.nesting();
    let boxes = view
        .boxes
        .iter()
        .zip(contents.iter().cloned())
        .zip(&layout.boxes)
        .enumerate()
        .map(|(index, ((&kind, (title, lines)), rect))| {
            let (role, path, node_ids) = match kind {
                BoxKind::Op(node) => {
                    let leaf = model.node_scopes[node].last().filter(|&&scope| model.scopes[scope].nodes.len() == 1);
                    let path = model.node_scopes[node].last().map(|&scope| model.scopes[scope].path.clone()).unwrap_or_default();
                    (if leaf.is_some() { BoxRole::Module } else { BoxRole::Op }, path, vec![graph.nodes[node].id])
                }
                BoxKind::Scope(scope) => {
                    let data = &model.scopes[scope];
                    let role = if data.nodes.len() == 1 { BoxRole::Module } else { BoxRole::Folded };
                    (role, data.path.clone(), data.nodes.iter().map(|&node| graph.nodes[node].id).collect())
                }
                BoxKind::Input(_) => (BoxRole::Input, String::new(), Vec::new()),
                BoxKind::Output(_) => (BoxRole::Output, String::new(), Vec::new()),
            };
            let repeats = model.box_repeats(view, runs, index).unwrap_or(1) as u32;
            LaidOutBox { role, title, lines, path, node_ids, repeats, x: rect.x, y: rect.y, width: rect.width, height: rect.height }
        })
        .collect();
    let mut frames: Vec<(u32, LaidOutFrame)> = view
        .clusters
        .iter()
        .enumerate()
        .filter_map(|(cluster, (scope, _))| scope.map(|scope| (cluster, scope)))
        .map(|(cluster, scope)| {
            let rect = layout.clusters[cluster];
            let frame = LaidOutFrame {
                path: model.scopes[scope].path.clone(),
                label: cluster_labels[cluster].clone(),
                depth: nesting[cluster] as u32,
                repeats: runs.repeats(scope).unwrap_or(1) as u32,
                x: rect.x,
                y: rect.y,
                width: rect.width,
                height: rect.height,
                label_x: layout.label_x[cluster],
            };
            (frame.depth, frame)
        })
        .collect();
    frames.sort_by_key(|(depth, _)| *depth);
    let edges = view
        .edges
        .iter()
        .zip(&layout.edges)
        .map(|(&(from, to, ref shape), points)| LaidOutEdge { from, to, points: points.clone(), shape: shape.clone() })
        .collect();
    let alt_text = model.alt_text(view, runs, options);
    GraphLayout { width: layout.width, height: layout.height, boxes, frames: frames.into_iter().map(|(_, frame)| frame).collect(), edges, alt_text }
}

fn graph_scene(model: &Model<'_>, arranged: &Arranged, options: &GraphOptions) -> (Scene, String) {
    let Arranged { runs, view, contents, cluster_labels, layout } = arranged;
    let graph = model.graph;

    let title_width = text_width(&graph.title, TITLE_SIZE);
    let width = (layout.width + 2.0 * MARGIN + STACK_OFFSET).max(title_width + 2.0 * MARGIN).ceil();
    let height = (MARGIN + TITLE_BAND + layout.height + STACK_OFFSET + MARGIN).ceil();
    let mut scene = Scene::new(width, height);
    scene.push(Element::Text {
        x: MARGIN,
        y: MARGIN + TITLE_SIZE,
        text: graph.title.clone(),
        size: TITLE_SIZE,
        anchor: Anchor::Start,
        colour: crate::colour::TEXT,
        rotation: 0.0,
    });
    let (dx, dy) = (((width - layout.width - STACK_OFFSET) / 2.0).round(), MARGIN + TITLE_BAND);
    let shift = |rect: Rect| Rect { x: rect.x + dx, y: rect.y + dy, ..rect };

    // Frames, outermost first, each a shade darker than the one around it.
    let nesting = view.nesting();
    for cluster in 1..view.clusters.len() {
        let fill = CLUSTER_FILLS[(nesting[cluster] - 1).min(CLUSTER_FILLS.len() - 1)];
        rounded_box(&mut scene, shift(layout.clusters[cluster]), CLUSTER_RADIUS, fill, CLUSTER_BORDER);
    }

    // Arrows under the boxes.
    let edge_paths: Vec<Vec<(f32, f32)>> = layout.edges.iter().map(|path| path.iter().map(|&(x, y)| (x + dx, y + dy)).collect()).collect();
    for path in &edge_paths {
        draw_arrow(&mut scene, path);
    }

    // Boxes and their text.
    let boxes: Vec<Rect> = layout.boxes.iter().map(|&rect| shift(rect)).collect();
    for (index, rect) in boxes.iter().enumerate() {
        let (fill, border) = model.box_colours(view, index);
        if model.box_repeats(view, runs, index).is_some() {
            rounded_box(&mut scene, Rect { x: rect.x + STACK_OFFSET, y: rect.y + STACK_OFFSET, ..*rect }, BOX_RADIUS, fill, border);
        }
        rounded_box(&mut scene, *rect, BOX_RADIUS, fill, border);
        let (title, lines) = &contents[index];
        let centre = rect.x + rect.width / 2.0;
        let block = BOX_TITLE_SIZE + BOX_LINE_STEP * lines.len() as f32;
        let top = rect.y + (rect.height - block) / 2.0;
        scene.push(Element::Text {
            x: centre,
            y: top + 10.0,
            text: title.clone(),
            size: BOX_TITLE_SIZE,
            anchor: Anchor::Middle,
            colour: crate::colour::TEXT,
            rotation: 0.0,
        });
        for (line_index, line) in lines.iter().enumerate() {
            let y = top + 10.0 + BOX_LINE_STEP * (line_index + 1) as f32;
            scene.push(Element::Text {
                x: centre,
                y,
                text: line.clone(),
                size: BOX_LINE_SIZE,
                anchor: Anchor::Middle,
                colour: SUBTLE_TEXT,
                rotation: 0.0,
            });
        }
    }

    // Frame labels in the band at the top, where the layout left room for them.
    for (cluster, label) in cluster_labels.iter().enumerate().skip(1) {
        let frame = shift(layout.clusters[cluster]);
        let (x, y) = (frame.x + layout.label_x[cluster], frame.y + graph_layout::LABEL_PAD + 9.0);
        scene.push(Element::Text { x, y, text: label.clone(), size: CLUSTER_LABEL_SIZE, anchor: Anchor::Start, colour: SUBTLE_TEXT, rotation: 0.0 });
    }

    draw_shapes(&mut scene, view, &edge_paths);

    let alt_text = model.alt_text(view, runs, options);
    (scene, alt_text)
}

/// Shape labels: one just below and right of the source box when every arrow leaving
/// it carries the same shape (one tensor, maybe used several times; lines drop straight
/// through that band before they turn, so it stays clear), else one per arrow just above
/// and right of where it arrives.
fn draw_shapes(scene: &mut Scene, view: &View, paths: &[Vec<(f32, f32)>]) {
    let mut by_source: Vec<Vec<usize>> = vec![Vec::new(); view.boxes.len()];
    for (index, &(from, _, _)) in view.edges.iter().enumerate() {
        by_source[from].push(index);
    }
    let mut label = |x: f32, y: f32, shape: &[i64]| {
        scene.push(Element::Text {
            x: x + SHAPE_OFFSET,
            y,
            text: shape_text(shape),
            size: SHAPE_SIZE,
            anchor: Anchor::Start,
            colour: SHAPE_COLOUR,
            rotation: 0.0,
        });
    };
    for edges in by_source {
        let Some(&first) = edges.first() else { continue };
        if edges.iter().all(|&edge| view.edges[edge].2 == view.edges[first].2) {
            if let (Some(shape), Some(&(x, y))) = (&view.edges[first].2, paths[first].first()) {
                label(x, y + 12.0, shape);
            }
        } else {
            for &edge in &edges {
                if let (Some(shape), Some(&(x, y))) = (&view.edges[edge].2, paths[edge].last()) {
                    label(x, y - 5.0, shape);
                }
            }
        }
    }
}

/// `1×64×56×56`; a scalar is `scalar`.
fn shape_text(shape: &[i64]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    shape.iter().map(|dim| dim.to_string()).collect::<Vec<_>>().join("×")
}

fn draw_arrow(scene: &mut Scene, path: &[(f32, f32)]) {
    if path.len() < 2 {
        return;
    }
    let tip = *path.last().expect("two points");
    // The direction the arrow arrives from, taken a head's length back along the path.
    let mut back = path[path.len() - 2];
    for &point in path.iter().rev().skip(1) {
        back = point;
        if ((tip.0 - point.0).powi(2) + (tip.1 - point.1).powi(2)).sqrt() >= ARROW_LENGTH {
            break;
        }
    }
    let length = ((tip.0 - back.0).powi(2) + (tip.1 - back.1).powi(2)).sqrt().max(0.001);
    let direction = ((tip.0 - back.0) / length, (tip.1 - back.1) / length);
    let normal = (-direction.1, direction.0);
    let base = (tip.0 - direction.0 * ARROW_LENGTH, tip.1 - direction.1 * ARROW_LENGTH);
    // The line stops inside the head, so its round end does not show past the tip.
    let mut line: Vec<(f32, f32)> = path[..path.len() - 1].to_vec();
    let stop = (tip.0 - direction.0 * (ARROW_LENGTH - 2.0), tip.1 - direction.1 * (ARROW_LENGTH - 2.0));
    while line.len() > 1 {
        let last = *line.last().expect("not empty");
        if (last.0 - tip.0) * direction.0 + (last.1 - tip.1) * direction.1 > -(ARROW_LENGTH - 2.0) {
            line.pop();
        } else {
            break;
        }
    }
    line.push(stop);
    scene.push(Element::Polyline { points: line, colour: EDGE_COLOUR, width: 1.3 });
    // A filled head without a polygon primitive: a fan of strokes from the tip to points
    // along the base, close enough to overlap, closed by the base itself.
    let fan = [-1.0f32, -0.6, -0.2, 0.2, 0.6, 1.0];
    let at = |t: f32| (base.0 + normal.0 * ARROW_HALF_WIDTH * t, base.1 + normal.1 * ARROW_HALF_WIDTH * t);
    let mut head = Vec::with_capacity(fan.len() * 2 + 1);
    for t in fan {
        head.push(tip);
        head.push(at(t));
    }
    head.push(at(-1.0));
    scene.push(Element::Polyline { points: head, colour: EDGE_COLOUR, width: 1.4 });
}

/// A filled rectangle with round corners and a one-pixel border, from the primitives
/// every format has: two rectangles and four discs for the fill, a polyline for the edge.
fn rounded_box(scene: &mut Scene, rect: Rect, radius: f32, fill: Colour, border: Colour) {
    let Rect { x, y, width, height } = rect;
    let radius = radius.min(width / 2.0).min(height / 2.0);
    scene.push(Element::Rect { x: x + radius, y, width: width - 2.0 * radius, height, fill });
    scene.push(Element::Rect { x, y: y + radius, width, height: height - 2.0 * radius, fill });
    for centre in
        [(x + radius, y + radius), (x + width - radius, y + radius), (x + radius, y + height - radius), (x + width - radius, y + height - radius)]
    {
        scene.push(Element::Circle { centre, radius, fill });
    }
    // The border's centre line, half a pixel in, so a one-pixel line stays crisp.
    let (left, top, right, bottom, r) = (x + 0.5, y + 0.5, x + width - 0.5, y + height - 0.5, radius - 0.5);
    let corner = |cx: f32, cy: f32, from_degrees: f32| -> Vec<(f32, f32)> {
        (0..=6)
            .map(|step| {
                let angle = (from_degrees + 15.0 * step as f32).to_radians();
                (cx + r * angle.cos(), cy + r * angle.sin())
            })
            .collect()
    };
    let mut points = vec![((left + right) / 2.0, top)];
    points.extend(corner(right - r, top + r, 270.0));
    points.extend(corner(right - r, bottom - r, 0.0));
    points.extend(corner(left + r, bottom - r, 90.0));
    points.extend(corner(left + r, top + r, 180.0));
    points.push(((left + right) / 2.0, top));
    scene.push(Element::Polyline { points, colour: border, width: 1.0 });
}

impl Runs {
    fn none(scopes: usize, nodes: usize) -> Runs {
        Runs { runs: Vec::new(), member_of: vec![None; scopes], substitute: vec![None; nodes] }
    }

    fn is_hidden(&self, scope: usize) -> bool {
        matches!(self.member_of[scope], Some((_, position)) if position > 0)
    }

    /// How many calls a drawn scope stands for, when it is the first of a run.
    fn repeats(&self, scope: usize) -> Option<usize> {
        match self.member_of[scope] {
            Some((run, 0)) => Some(self.runs[run].len()),
            _ => None,
        }
    }
}

impl<'a> Model<'a> {
    fn new(graph: &'a ModelGraph) -> Result<Model<'a>, RenderError> {
        if graph.nodes.is_empty() {
            return Err(RenderError::BadData("the graph has no nodes".to_string()));
        }
        let mut index_of: HashMap<usize, usize> = HashMap::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            if let Some(first) = index_of.insert(node.id, index) {
                return Err(RenderError::BadData(format!("node id {} is used twice (nodes {first} and {index} in the list)", node.id)));
            }
        }
        let mut edges = Vec::with_capacity(graph.edges.len());
        for (position, edge) in graph.edges.iter().enumerate() {
            for id in [edge.from, edge.to] {
                if !index_of.contains_key(&id) {
                    return Err(RenderError::BadData(format!(
                        "edge {position} ({} → {}) names node {id}, which is not in the graph",
                        edge.from, edge.to
                    )));
                }
            }
            edges.push((index_of[&edge.from], index_of[&edge.to], edge.shape.as_deref()));
        }
        let count = graph.nodes.len();
        let mut input_shapes: Vec<Vec<&[i64]>> = vec![Vec::new(); count];
        for (name, shape, feeds) in &graph.inputs {
            for id in feeds {
                let index =
                    *index_of.get(id).ok_or_else(|| RenderError::BadData(format!("input {name:?} feeds node {id}, which is not in the graph")))?;
                input_shapes[index].push(shape);
            }
        }
        let mut output_shapes: Vec<Vec<&[i64]>> = vec![Vec::new(); count];
        for (name, shape, id) in &graph.outputs {
            let index =
                *index_of.get(id).ok_or_else(|| RenderError::BadData(format!("output {name:?} comes from node {id}, which is not in the graph")))?;
            output_shapes[index].push(shape);
        }
        let mut outgoing = vec![Vec::new(); count];
        let mut incoming = vec![Vec::new(); count];
        for (index, &(from, to, _)) in edges.iter().enumerate() {
            outgoing[from].push(index);
            incoming[to].push(index);
        }
        if let Some(cycle) = find_cycle(&edges, count) {
            let ids: Vec<String> = cycle.iter().map(|&index| graph.nodes[index].id.to_string()).collect();
            return Err(RenderError::BadData(format!("the graph has a cycle: {}", ids.join(" → "))));
        }

        // The module-call tree, children in order of first appearance.
        let mut scopes: Vec<Scope> = Vec::new();
        let mut root = Vec::new();
        let mut scope_of: HashMap<&[(String, String, u32)], usize> = HashMap::new();
        let mut node_scopes = Vec::with_capacity(count);
        for (index, node) in graph.nodes.iter().enumerate() {
            let mut chain: Vec<usize> = Vec::with_capacity(node.scopes.len());
            for level in 0..node.scopes.len() {
                let key = &node.scopes[..=level];
                let scope = match scope_of.get(key) {
                    Some(&scope) => scope,
                    None => {
                        let (path, type_name, _) = &node.scopes[level];
                        scopes.push(Scope {
                            path: path.clone(),
                            type_name: type_name.clone(),
                            depth: level as u32 + 1,
                            children: Vec::new(),
                            nodes: Vec::new(),
                        });
                        let scope = scopes.len() - 1;
                        match chain.last() {
                            Some(&parent) => scopes[parent].children.push(Item::Scope(scope)),
                            None => root.push(Item::Scope(scope)),
                        }
                        scope_of.insert(key, scope);
                        scope
                    }
                };
                scopes[scope].nodes.push(index);
                chain.push(scope);
            }
            match chain.last() {
                Some(&scope) => scopes[scope].children.push(Item::Node(index)),
                None => root.push(Item::Node(index)),
            }
            node_scopes.push(chain);
        }
        Ok(Model { graph, edges, outgoing, incoming, scopes, root, node_scopes, index_of, input_shapes, output_shapes })
    }

    /// Runs of identical consecutive sibling calls, in every call whose children are
    /// drawn (open, above the collapse depth) and at the root, except in calls named by
    /// `unfold_repeats`; inside a run only its first member is searched, as only it is
    /// drawn.
    fn find_runs(&self, fold: &Folding<'_>) -> Runs {
        let mut runs = Runs::none(self.scopes.len(), self.graph.nodes.len());
        let mut signatures: Vec<Option<String>> = vec![None; self.scopes.len()];
        self.find_runs_in(&self.root, "", fold, &mut runs, &mut signatures);
        runs
    }

    fn find_runs_in(&self, items: &[Item], parent: &str, fold: &Folding<'_>, runs: &mut Runs, signatures: &mut [Option<String>]) {
        let fold_here = !fold.unfold_repeats.contains(parent);
        let mut signature = |scope: usize| -> String { signatures[scope].get_or_insert_with(|| self.signature(scope)).clone() };
        let mut start = 0;
        let mut found: Vec<(usize, usize)> = Vec::new();
        while start < items.len() {
            let Item::Scope(first) = items[start] else {
                start += 1;
                continue;
            };
            let wanted = signature(first);
            let mut end = start + 1;
            while end < items.len() && matches!(items[end], Item::Scope(other) if signature(other) == wanted) {
                end += 1;
            }
            if !fold_here {
                end = start + 1;
            }
            found.push((start, end));
            start = end;
        }
        for (start, end) in found {
            let members: Vec<usize> =
                items[start..end].iter().map(|item| if let Item::Scope(scope) = *item { scope } else { unreachable!("runs hold scopes") }).collect();
            let first = members[0];
            if members.len() > 1 {
                let run = runs.runs.len();
                for (position, &member) in members.iter().enumerate() {
                    runs.member_of[member] = Some((run, position));
                    if position > 0 {
                        for (&node, &drawn) in self.scopes[member].nodes.iter().zip(&self.scopes[first].nodes) {
                            runs.substitute[node] = Some(drawn);
                        }
                    }
                }
                runs.runs.push(members);
            }
            if !fold.closed(&self.scopes[first]) {
                self.find_runs_in(&self.scopes[first].children, &self.scopes[first].path, fold, runs, signatures);
            }
        }
    }

    /// What makes two calls the same block: the nesting of module types and the op
    /// labels and details in order, the edges inside (between positions in that order)
    /// with their shapes, and the shapes entering and leaving. Paths and call indices do
    /// not count.
    fn signature(&self, scope: usize) -> String {
        let mut text = String::new();
        self.write_structure(Item::Scope(scope), &mut text);
        let nodes = &self.scopes[scope].nodes;
        let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(position, &node)| (node, position)).collect();
        let mut inside = Vec::new();
        let mut entering = Vec::new();
        let mut leaving = Vec::new();
        for (position, &node) in nodes.iter().enumerate() {
            for &edge in &self.outgoing[node] {
                let (_, to, shape) = self.edges[edge];
                match local.get(&to) {
                    Some(&target) => inside.push((position, target, shape)),
                    None => leaving.push((position, shape)),
                }
            }
            for &edge in &self.incoming[node] {
                let (from, _, shape) = self.edges[edge];
                if !local.contains_key(&from) {
                    entering.push((position, shape));
                }
            }
            entering.extend(self.input_shapes[node].iter().map(|&shape| (position, Some(shape))));
            leaving.extend(self.output_shapes[node].iter().map(|&shape| (position, Some(shape))));
        }
        for list in [&mut entering, &mut leaving] {
            list.sort();
            list.dedup();
        }
        inside.sort();
        inside.dedup();
        let _ = write!(text, "{inside:?}{entering:?}{leaving:?}");
        text
    }

    fn write_structure(&self, item: Item, text: &mut String) {
        match item {
            Item::Node(node) => {
                let node = &self.graph.nodes[node];
                let _ = write!(text, "[{:?} {:?}]", node.label, node.detail);
            }
            Item::Scope(scope) => {
                let _ = write!(text, "({:?}", self.scopes[scope].type_name);
                for &child in &self.scopes[scope].children {
                    self.write_structure(child, text);
                }
                text.push(')');
            }
        }
    }

    /// Whether a drawn module call is one box rather than its contents: closed calls
    /// (at the collapse depth, or not open in the view) that hold more than one op (a
    /// call of one op is shown as that op, whose label and detail say more), and the
    /// first call of a `×N` run that is closed or of single ops.
    fn is_box(&self, runs: &Runs, scope: usize, fold: &Folding<'_>) -> bool {
        let scope_data = &self.scopes[scope];
        let repeated = runs.repeats(scope).is_some();
        let closed = fold.closed(scope_data);
        (closed && scope_data.nodes.len() > 1) || (repeated && (closed || scope_data.nodes.len() == 1))
    }

    fn box_count(&self, runs: &Runs, scope: usize, fold: &Folding<'_>) -> usize {
        if self.is_box(runs, scope, fold) {
            return 1;
        }
        self.scopes[scope]
            .children
            .iter()
            .map(|&child| match child {
                Item::Node(_) => 1,
                Item::Scope(inner) if runs.is_hidden(inner) => 0,
                Item::Scope(inner) => self.box_count(runs, inner, fold),
            })
            .sum()
    }

    fn view(&self, fold: &Folding<'_>, runs: &Runs) -> Result<View, RenderError> {
        let mut view = View { boxes: Vec::new(), clusters: vec![(None, Vec::new())], box_context: Vec::new(), edges: Vec::new() };
        let mut box_of: Vec<Option<usize>> = vec![None; self.graph.nodes.len()];
        for index in 0..self.graph.inputs.len() {
            view.boxes.push(BoxKind::Input(index));
            view.box_context.push(String::new());
            view.clusters[0].1.push(Member::Box(view.boxes.len() - 1));
        }
        self.place(&self.root, 0, "", fold, runs, &mut view, &mut box_of);
        for index in 0..self.graph.outputs.len() {
            view.boxes.push(BoxKind::Output(index));
            view.box_context.push(String::new());
            view.clusters[0].1.push(Member::Box(view.boxes.len() - 1));
        }
        // Nodes of the hidden calls of a run are drawn as their match in the first call
        // (which may itself sit in a hidden call of a run nested in that one).
        let drawn_box = |node: usize| -> Result<usize, RenderError> {
            let mut current = node;
            for _ in 0..=self.graph.nodes.len() {
                if let Some(index) = box_of[current] {
                    return Ok(index);
                }
                current = runs.substitute[current]
                    .ok_or_else(|| RenderError::BadData(format!("node {} is in no box (internal error)", self.graph.nodes[node].id)))?;
            }
            Err(RenderError::BadData(format!("node {} is in no box (internal error)", self.graph.nodes[node].id)))
        };
        let mut merged: HashMap<(usize, usize), usize> = HashMap::new();
        let mut add = |view: &mut View, from: usize, to: usize, shape: Option<&[i64]>| {
            if from == to {
                return;
            }
            merged.entry((from, to)).or_insert_with(|| {
                view.edges.push((from, to, shape.map(<[i64]>::to_vec)));
                view.edges.len() - 1
            });
        };
        // Input boxes come first, output boxes last (see above).
        for (input_box, (_, shape, feeds)) in self.graph.inputs.iter().enumerate() {
            for id in feeds {
                add(&mut view, input_box, drawn_box(self.index_of[id])?, Some(shape));
            }
        }
        for &(from, to, shape) in &self.edges {
            if self.between_run_members(runs, from, to) {
                continue;
            }
            add(&mut view, drawn_box(from)?, drawn_box(to)?, shape);
        }
        let output_boxes = view.boxes.len() - self.graph.outputs.len();
        for (index, (_, shape, id)) in self.graph.outputs.iter().enumerate() {
            add(&mut view, drawn_box(self.index_of[id])?, output_boxes + index, Some(shape));
        }
        Ok(view)
    }

    #[allow(clippy::too_many_arguments)]
    fn place(&self, items: &[Item], cluster: usize, context: &str, fold: &Folding<'_>, runs: &Runs, view: &mut View, box_of: &mut [Option<usize>]) {
        for &item in items {
            match item {
                Item::Node(node) => {
                    view.boxes.push(BoxKind::Op(node));
                    view.box_context.push(context.to_string());
                    box_of[node] = Some(view.boxes.len() - 1);
                    view.clusters[cluster].1.push(Member::Box(view.boxes.len() - 1));
                }
                Item::Scope(scope) if runs.is_hidden(scope) => {}
                Item::Scope(scope) if self.is_box(runs, scope, fold) => {
                    view.boxes.push(BoxKind::Scope(scope));
                    view.box_context.push(context.to_string());
                    for &node in &self.scopes[scope].nodes {
                        box_of[node] = Some(view.boxes.len() - 1);
                    }
                    view.clusters[cluster].1.push(Member::Box(view.boxes.len() - 1));
                }
                Item::Scope(scope) if self.box_count(runs, scope, fold) > 1 || fold.held_open(&self.scopes[scope]) => {
                    view.clusters.push((Some(scope), Vec::new()));
                    let inner = view.clusters.len() - 1;
                    view.clusters[cluster].1.push(Member::Cluster(inner));
                    self.place(&self.scopes[scope].children, inner, &self.scopes[scope].path, fold, runs, view, box_of);
                }
                Item::Scope(scope) => self.place(&self.scopes[scope].children, cluster, context, fold, runs, view, box_of),
            }
        }
    }

    /// Whether an edge runs from one call of a `×N` run to another: such edges are
    /// internal to the run and not drawn.
    fn between_run_members(&self, runs: &Runs, from: usize, to: usize) -> bool {
        let (a, b) = (&self.node_scopes[from], &self.node_scopes[to]);
        match a.iter().zip(b).find(|(x, y)| x != y) {
            Some((&x, &y)) => matches!((runs.member_of[x], runs.member_of[y]), (Some((run_x, _)), Some((run_y, _))) if run_x == run_y),
            None => false,
        }
    }

    /// `layer1.0–layer1.1`, or the path alone when the call is not repeated.
    fn path_range(&self, runs: &Runs, scope: usize) -> String {
        match runs.member_of[scope] {
            Some((run, 0)) => {
                let last = *runs.runs[run].last().expect("runs have members");
                format!("{}–{}", self.scopes[scope].path, self.scopes[last].path)
            }
            _ => self.scopes[scope].path.clone(),
        }
    }

    fn type_with_count(&self, runs: &Runs, scope: usize) -> String {
        match runs.repeats(scope) {
            Some(count) => format!("{} ×{count}", self.scopes[scope].type_name),
            None => self.scopes[scope].type_name.clone(),
        }
    }

    fn scope_label(&self, runs: &Runs, scope: usize) -> String {
        format!("{}: {}", self.path_range(runs, scope), self.type_with_count(runs, scope))
    }

    /// The `×N` count of a box, if it stands for a run.
    fn box_repeats(&self, view: &View, runs: &Runs, index: usize) -> Option<usize> {
        match view.boxes[index] {
            BoxKind::Scope(scope) => runs.repeats(scope),
            _ => None,
        }
    }

    /// A box's title and smaller lines below it.
    fn box_text(&self, view: &View, runs: &Runs, index: usize) -> (String, Vec<String>) {
        match view.boxes[index] {
            BoxKind::Op(node) => {
                let data = &self.graph.nodes[node];
                let mut lines = Vec::new();
                // A leaf module call is named by its path, shortened inside a frame
                // that already names the start of it.
                if let Some(&scope) = self.node_scopes[node].last() {
                    if self.scopes[scope].nodes.len() == 1 {
                        let path = &self.scopes[scope].path;
                        let context = &view.box_context[index];
                        let short = path
                            .strip_prefix(context.as_str())
                            .and_then(|rest| rest.strip_prefix('.'))
                            .filter(|_| !context.is_empty())
                            .unwrap_or(path);
                        lines.push(short.to_string());
                    }
                }
                if !data.detail.is_empty() {
                    lines.push(data.detail.clone());
                }
                let joined = lines.join(" · ");
                (data.label.clone(), if joined.is_empty() { Vec::new() } else { vec![joined] })
            }
            BoxKind::Scope(scope) => {
                let single = (self.scopes[scope].nodes.len() == 1).then(|| &self.graph.nodes[self.scopes[scope].nodes[0]]);
                match single {
                    // A repeated single op: its own label and detail, counted.
                    Some(node) => {
                        let mut lines = vec![self.path_range(runs, scope)];
                        if !node.detail.is_empty() {
                            lines[0] = format!("{} · {}", lines[0], node.detail);
                        }
                        (format!("{} ×{}", node.label, runs.repeats(scope).unwrap_or(1)), lines)
                    }
                    None => (self.type_with_count(runs, scope), vec![self.path_range(runs, scope)]),
                }
            }
            BoxKind::Input(input) => (self.graph.inputs[input].0.clone(), vec!["input".to_string()]),
            BoxKind::Output(output) => (self.graph.outputs[output].0.clone(), vec!["output".to_string()]),
        }
    }

    /// Fill and border: blue for module calls shown as their op, sand for functional
    /// ops, green for folded module calls, grey for the model's inputs and outputs.
    fn box_colours(&self, view: &View, index: usize) -> (Colour, Colour) {
        const MODULE: (Colour, Colour) = ([221, 233, 250], [88, 120, 170]);
        const FUNCTION: (Colour, Colour) = ([252, 242, 216], [176, 140, 64]);
        const FOLDED: (Colour, Colour) = ([219, 240, 223], [76, 138, 94]);
        const TERMINAL: (Colour, Colour) = ([238, 238, 238], [130, 130, 130]);
        match view.boxes[index] {
            BoxKind::Op(node) => match self.node_scopes[node].last() {
                Some(&scope) if self.scopes[scope].nodes.len() == 1 => MODULE,
                _ => FUNCTION,
            },
            BoxKind::Scope(scope) if self.scopes[scope].nodes.len() == 1 => MODULE,
            BoxKind::Scope(_) => FOLDED,
            BoxKind::Input(_) | BoxKind::Output(_) => TERMINAL,
        }
    }

    fn alt_text(&self, view: &View, runs: &Runs, options: &GraphOptions) -> String {
        let plural = |count: usize, one: &str, many: &str| format!("{count} {}", if count == 1 { one } else { many });
        let depth = match options.depth {
            Some(depth) => format!("depth {depth}"),
            None => "full depth".to_string(),
        };
        let repeats = if !options.collapse_repeats {
            "repeats not collapsed".to_string()
        } else if runs.runs.is_empty() {
            "0 repeated runs collapsed".to_string()
        } else {
            let names: Vec<String> =
                runs.runs.iter().map(|members| format!("{} {}", self.path_range(runs, members[0]), self.type_with_count(runs, members[0]))).collect();
            format!("{} collapsed ({})", plural(runs.runs.len(), "repeated run", "repeated runs"), names.join(", "))
        };
        format!(
            "graph of {}: {} ({}, {}), {}, {depth}, {repeats}",
            self.graph.title,
            plural(view.boxes.len(), "box", "boxes"),
            plural(self.graph.inputs.len(), "input", "inputs"),
            plural(self.graph.outputs.len(), "output", "outputs"),
            plural(view.edges.len(), "edge", "edges"),
        )
    }
}

/// A cycle among the nodes as indices in order, if there is one.
fn find_cycle(edges: &[(usize, usize, Option<&[i64]>)], count: usize) -> Option<Vec<usize>> {
    let mut incoming = vec![0usize; count];
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); count];
    for &(from, to, _) in edges {
        incoming[to] += 1;
        outgoing[from].push(to);
        predecessors[to].push(from);
    }
    let mut queue: Vec<usize> = (0..count).filter(|&index| incoming[index] == 0).collect();
    let mut done = vec![false; count];
    while let Some(index) = queue.pop() {
        done[index] = true;
        for &next in &outgoing[index] {
            incoming[next] -= 1;
            if incoming[next] == 0 {
                queue.push(next);
            }
        }
    }
    // Every node left has a predecessor that is also left: walking back must repeat.
    let start = (0..count).find(|&index| !done[index])?;
    let mut walk = vec![start];
    let mut seen_at: HashMap<usize, usize> = HashMap::from([(start, 0)]);
    loop {
        let current = *walk.last().expect("not empty");
        let previous = *predecessors[current].iter().find(|&&p| !done[p]).expect("a node left over has a predecessor left over");
        if let Some(&position) = seen_at.get(&previous) {
            let mut cycle: Vec<usize> = walk[position..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Some(cycle);
        }
        seen_at.insert(previous, walk.len());
        walk.push(previous);
    }
}
