//! A compact layered (Sugiyama) layout for directed graphs whose boxes are grouped into
//! nested clusters, laid out top to bottom without a `dot` binary.
//!
//! Each cluster is laid out on its own, innermost first, and then placed in its parent as
//! one rigid block. That is what guarantees that a cluster's frame contains its boxes and
//! no others. An edge that crosses a cluster's frame goes through a *port*: inside the
//! cluster an entry port on the top side stands for the source outside it (one port per
//! source box, so a tensor used twice inside fans out inside), and an exit port on the
//! bottom side stands for the outside targets of a source inside it. The parent sees the
//! block with those ports on its top and bottom sides, so a skip connection that enters a
//! block and ends at an `add` deep inside is routed down the block's side like any
//! other long edge.
//!
//! Within one cluster the steps are the classic ones: cycles are broken by reversing the
//! back edges of a depth-first search (the model graph is acyclic, but collapsing can in
//! principle close a loop); layers by longest path, with sources pulled down next to
//! their first consumer; long edges split by dummy nodes, one per layer they cross;
//! barycentre sweeps to reduce crossings (the ordering with the fewest crossings wins);
//! horizontal positions from alternating sweeps in which every node moves to the
//! weighted median of its neighbours, solved exactly per layer under the separation
//! constraints by pool-adjacent-violators. A dummy follows its own chain and a box the
//! boxes it connects to, so long edges and chains of boxes both run straight. Inside a layer every line is vertical; lines only change course in the
//! gaps between layers, as cubic curves, so they never cut through a box.

use std::collections::{HashMap, HashSet};

/// Vertical space between two layers, where edges bend and shape labels sit.
pub(crate) const LAYER_GAP: f32 = 38.0;
/// Horizontal space between two boxes (or blocks) of one layer.
const NODE_GAP: f32 = 22.0;
/// Horizontal space next to a dummy node or a port (a line, not a box).
const LINE_GAP: f32 = 12.0;
/// Space between a cluster's frame and what it contains, left and right.
pub(crate) const CLUSTER_PAD: f32 = 12.0;
/// Space between a cluster's entry ports (below its label) and its first layer: room
/// for arrows to fan out, no shape labels there.
const ENTRY_GAP: f32 = 22.0;
/// Space between a cluster's last layer and the bottom of its frame.
const CLUSTER_PAD_BOTTOM: f32 = 18.0;
/// Space above and below a cluster's label.
pub(crate) const LABEL_PAD: f32 = 7.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Size {
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Member {
    Box(usize),
    Cluster(usize),
}

/// One cluster: what it holds, in execution order (the starting order of the layout),
/// and the size of its label, which the frame reserves at its top. Cluster 0 is the
/// whole figure: no frame, no label.
#[derive(Debug, Clone)]
pub(crate) struct ClusterInput {
    pub members: Vec<Member>,
    pub label: Size,
}

/// Boxes with their sizes, clusters (0 is the root; every box and every other cluster is
/// a member of exactly one cluster) and edges between boxes, distinct and without self
/// loops.
#[derive(Debug, Clone)]
pub(crate) struct LayoutInput {
    pub boxes: Vec<Size>,
    /// Per box, how far right of its left side its annotations reach (the shape label
    /// below it); the layout keeps that much room free, as if the box were that wide.
    pub reach: Vec<f32>,
    pub clusters: Vec<ClusterInput>,
    pub edges: Vec<(usize, usize)>,
}

/// Where everything went: box and cluster frames (the root's is the whole drawing) and one
/// polyline per input edge, from the source's bottom to the target's top.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub width: f32,
    pub height: f32,
    pub boxes: Vec<Rect>,
    pub clusters: Vec<Rect>,
    /// Per cluster, where its label starts, from the frame's left side: clear of the
    /// arrows that enter at the top.
    pub label_x: Vec<f32>,
    pub edges: Vec<Vec<(f32, f32)>>,
}

/// One end of an edge inside one cluster: a member, or the port of the edge's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Member(usize),
    Entry,
    Exit,
}

/// A cluster laid out on its own, in coordinates from its frame's top-left corner.
struct Block {
    size: Size,
    label_x: f32,
    member_positions: Vec<(f32, f32)>,
    /// Source box → x of its port on the top (entry) or bottom (exit) side.
    top_ports: HashMap<usize, f32>,
    bottom_ports: HashMap<usize, f32>,
    /// (source end, target end, source box) → the polyline between them.
    paths: HashMap<(End, End, usize), Vec<(f32, f32)>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NodeKind {
    Member(usize),
    Entry(usize),
    Exit(usize),
    Dummy,
}

struct LocalNode {
    kind: NodeKind,
    /// The room the node takes in its layer: a box's annotations count.
    width: f32,
    /// Where edges attach, from the left side, unless a cluster's port says otherwise.
    attach: f32,
    height: f32,
    layer: usize,
    /// Execution order, used to break ties between equal barycentres.
    key: f32,
}

struct LocalEdge {
    source: usize,
    target: usize,
    /// The source box of the model edge(s) this stands for: names ports and paths.
    via: usize,
    reversed: bool,
    /// Nodes from the top end to the bottom end, dummies included.
    chain: Vec<usize>,
}

/// One link of a `LocalEdge`'s chain: the stretch of the edge between two nodes on
/// adjacent layers, with where it attaches to each. Ordering, crossing counts and
/// horizontal placement work on these, because each spans exactly one layer gap.
struct LayerLink {
    upper: usize,
    lower: usize,
    upper_offset: f32,
    lower_offset: f32,
}

pub(crate) fn layout(input: &LayoutInput) -> Layout {
    let graph = Compound::new(input);
    let mut blocks: Vec<Option<Block>> = (0..input.clusters.len()).map(|_| None).collect();
    for &cluster in graph.post_order().iter() {
        let block = graph.layout_cluster(cluster, &blocks);
        blocks[cluster] = Some(block);
    }
    let blocks: Vec<Block> = blocks.into_iter().map(|block| block.expect("every cluster is laid out")).collect();

    // Absolute origins, parents before children.
    let mut origins = vec![(0.0f32, 0.0f32); input.clusters.len()];
    for &cluster in graph.post_order().iter().rev() {
        for (slot, member) in input.clusters[cluster].members.iter().enumerate() {
            if let Member::Cluster(child) = *member {
                let (x, y) = blocks[cluster].member_positions[slot];
                origins[child] = (origins[cluster].0 + x, origins[cluster].1 + y);
            }
        }
    }
    let boxes = (0..input.boxes.len())
        .map(|index| {
            let cluster = graph.box_cluster[index];
            let (x, y) = blocks[cluster].member_positions[graph.box_slot[index]];
            let size = input.boxes[index];
            Rect { x: origins[cluster].0 + x, y: origins[cluster].1 + y, width: size.width, height: size.height }
        })
        .collect();
    let clusters = (0..input.clusters.len())
        .map(|index| Rect { x: origins[index].0, y: origins[index].1, width: blocks[index].size.width, height: blocks[index].size.height })
        .collect();
    let edges = input.edges.iter().map(|&(source, target)| graph.compose_path(source, target, &blocks, &origins)).collect();
    let label_x = blocks.iter().map(|block| block.label_x).collect();
    Layout { width: blocks[0].size.width, height: blocks[0].size.height, boxes, clusters, label_x, edges }
}

/// The cluster tree with the look-ups every step needs.
struct Compound<'a> {
    input: &'a LayoutInput,
    cluster_parent: Vec<Option<usize>>,
    cluster_slot: Vec<usize>,
    box_cluster: Vec<usize>,
    box_slot: Vec<usize>,
}

impl<'a> Compound<'a> {
    fn new(input: &'a LayoutInput) -> Compound<'a> {
        let mut cluster_parent = vec![None; input.clusters.len()];
        let mut cluster_slot = vec![0; input.clusters.len()];
        let mut box_cluster = vec![0; input.boxes.len()];
        let mut box_slot = vec![0; input.boxes.len()];
        for (cluster, spec) in input.clusters.iter().enumerate() {
            for (slot, member) in spec.members.iter().enumerate() {
                match *member {
                    Member::Box(index) => {
                        box_cluster[index] = cluster;
                        box_slot[index] = slot;
                    }
                    Member::Cluster(child) => {
                        cluster_parent[child] = Some(cluster);
                        cluster_slot[child] = slot;
                    }
                }
            }
        }
        Compound { input, cluster_parent, cluster_slot, box_cluster, box_slot }
    }

    /// Clusters, children before their parent, the root last.
    fn post_order(&self) -> Vec<usize> {
        fn visit(compound: &Compound<'_>, cluster: usize, order: &mut Vec<usize>) {
            for member in &compound.input.clusters[cluster].members {
                if let Member::Cluster(child) = *member {
                    visit(compound, child, order);
                }
            }
            order.push(cluster);
        }
        let mut order = Vec::new();
        visit(self, 0, &mut order);
        order
    }

    /// The clusters around a box, innermost first, the root last.
    fn ancestors(&self, index: usize) -> Vec<usize> {
        let mut chain = vec![self.box_cluster[index]];
        while let Some(parent) = self.cluster_parent[*chain.last().expect("not empty")] {
            chain.push(parent);
        }
        chain
    }

    /// The slot of the member of `cluster` that holds box `index`, if any does.
    fn member_holding(&self, cluster: usize, index: usize) -> Option<usize> {
        let mut current = self.box_cluster[index];
        if current == cluster {
            return Some(self.box_slot[index]);
        }
        while let Some(parent) = self.cluster_parent[current] {
            if parent == cluster {
                return Some(self.cluster_slot[current]);
            }
            current = parent;
        }
        None
    }

    /// Lays out one cluster as a block in its own coordinates: its members (boxes, and child
    /// clusters already laid out as blocks) and the ports of edges that cross its frame are
    /// put in layers and ordered, the frame is sized around them with room for the label,
    /// and every edge the cluster holds is routed. Each step is a function of its own.
    fn layout_cluster(&self, cluster: usize, blocks: &[Option<Block>]) -> Block {
        let spec = &self.input.clusters[cluster];
        let is_root = cluster == 0;
        let mut nodes = self.member_nodes(spec, blocks);
        let mut edges = self.local_edges(cluster, &mut nodes);

        break_cycles(&nodes, &mut edges);
        let layer_count = assign_layers(&mut nodes, &edges);
        add_dummies(&mut nodes, &mut edges);
        let links = self.layer_links(&nodes, &edges, &spec.members, blocks);
        let mut layers = nodes_by_layer(&nodes, layer_count);
        order_layers(&nodes, &links, &mut layers);
        let xs = assign_x(&nodes, &links, &layers);

        let rows = stack_layers(&nodes, layer_count, spec.label, is_root);
        let frame = fit_frame(&nodes, &xs, spec.label, is_root);
        let positions = NodePositions::new(&nodes, &xs, frame.shift, &rows);
        let member_positions = (0..spec.members.len()).map(|slot| (positions.x[slot], positions.y[slot])).collect();
        let (top_ports, bottom_ports) = port_positions(&nodes, &positions);
        let paths = self.edge_paths(&nodes, &edges, &spec.members, blocks, &positions, &rows);
        let size = Size { width: frame.width, height: rows.block_height.ceil() };
        Block { size, label_x: frame.label_x, member_positions, top_ports, bottom_ports, paths }
    }

    /// One node per member of the cluster, in execution order, so that a member's node
    /// index is its slot. A box takes the room of its annotations too; a child cluster is
    /// as big as the block it was laid out as.
    fn member_nodes(&self, spec: &ClusterInput, blocks: &[Option<Block>]) -> Vec<LocalNode> {
        spec.members
            .iter()
            .enumerate()
            .map(|(slot, member)| {
                let (size, reach) = match *member {
                    Member::Box(index) => (self.input.boxes[index], self.input.reach.get(index).copied().unwrap_or(0.0)),
                    Member::Cluster(child) => (blocks[child].as_ref().expect("children first").size, 0.0),
                };
                LocalNode {
                    kind: NodeKind::Member(slot),
                    width: size.width.max(reach),
                    attach: size.width / 2.0,
                    height: size.height,
                    layer: 0,
                    key: slot as f32,
                }
            })
            .collect()
    }

    /// The model's edges as this cluster sees them, one per (source end, target end,
    /// source box): an edge inside one member is that member's business and is left out,
    /// and an edge that crosses the frame ends at a port, which is added to `nodes` the
    /// first time its source box needs one. A port's key puts it just before the first
    /// member it feeds (entry) or just after the last member that feeds it (exit), so that
    /// ordering starts it beside them.
    fn local_edges(&self, cluster: usize, nodes: &mut Vec<LocalNode>) -> Vec<LocalEdge> {
        let mut entries: HashMap<usize, usize> = HashMap::new();
        let mut exits: HashMap<usize, usize> = HashMap::new();
        let mut seen = HashSet::new();
        let mut edges: Vec<LocalEdge> = Vec::new();
        for &(source_box, target_box) in &self.input.edges {
            let (source, target) = match (self.member_holding(cluster, source_box), self.member_holding(cluster, target_box)) {
                (None, None) => continue,
                (Some(a), Some(b)) if a == b => continue,
                (Some(a), Some(b)) => (a, b),
                (None, Some(b)) => {
                    let port = *entries.entry(source_box).or_insert_with(|| {
                        nodes.push(LocalNode { kind: NodeKind::Entry(source_box), width: 0.0, attach: 0.0, height: 0.0, layer: 0, key: f32::MAX });
                        nodes.len() - 1
                    });
                    nodes[port].key = nodes[port].key.min(b as f32 - 0.5);
                    (port, b)
                }
                (Some(a), None) => {
                    let port = *exits.entry(source_box).or_insert_with(|| {
                        nodes.push(LocalNode { kind: NodeKind::Exit(source_box), width: 0.0, attach: 0.0, height: 0.0, layer: 0, key: f32::MIN });
                        nodes.len() - 1
                    });
                    nodes[port].key = nodes[port].key.max(a as f32 + 0.5);
                    (a, port)
                }
            };
            if seen.insert((source, target, source_box)) {
                edges.push(LocalEdge { source, target, via: source_box, reversed: false, chain: Vec::new() });
            }
        }
        edges
    }

    /// Per edge (by index) that arrives on the top of a box together with other edges,
    /// where on that top it arrives, from the box's left side. Arrows into one box
    /// (different tensors) arrive side by side across its top, in the order they come
    /// from, instead of meeting in one point; the one coming from straight above keeps the
    /// centre, so a chain stays straight. Edges that arrive alone are not in the map.
    fn spread_arrivals(
        &self,
        nodes: &[LocalNode],
        edges: &[LocalEdge],
        members: &[Member],
        blocks: &[Option<Block>],
        positions: &NodePositions,
    ) -> HashMap<usize, f32> {
        let x_of = |index: usize| positions.x[index];
        let mut arriving: HashMap<usize, Vec<(f32, usize)>> = HashMap::new();
        for (index, edge) in edges.iter().enumerate() {
            let bottom = *edge.chain.last().expect("chains have two ends");
            if let (NodeKind::Member(slot), false) = (nodes[bottom].kind, edge.reversed) {
                if matches!(members[slot], Member::Box(_)) {
                    let above = edge.chain[edge.chain.len() - 2];
                    let from = x_of(above) + if above == edge.chain[0] { self.out_offset(&nodes[above], edge.via, members, blocks) } else { 0.0 };
                    arriving.entry(bottom).or_default().push((from, index));
                }
            }
        }
        let mut spread: HashMap<usize, f32> = HashMap::new();
        for (bottom, mut list) in arriving {
            if list.len() < 2 {
                continue;
            }
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            let attach = nodes[bottom].attach;
            let centre = x_of(bottom) + attach;
            let straight = (0..list.len()).min_by(|&a, &b| (list[a].0 - centre).abs().total_cmp(&(list[b].0 - centre).abs())).expect("two or more");
            let step = 14.0f32.min((attach - 6.0).max(0.0) / (straight.max(list.len() - 1 - straight)) as f32);
            for (position, (_, edge)) in list.iter().enumerate() {
                spread.insert(*edge, attach + (position as f32 - straight as f32) * step);
            }
        }
        spread
    }

    /// The route of every edge of the cluster, filed under its ends and its source box,
    /// which is how `compose_path` finds the pieces of a model edge across clusters. A
    /// route runs from the bottom of its upper end (the frame's top, for an entry port) to
    /// the top of its lower end; an edge turned round to break a cycle gets its route
    /// reversed and is filed under its ends in the model's direction.
    fn edge_paths(
        &self,
        nodes: &[LocalNode],
        edges: &[LocalEdge],
        members: &[Member],
        blocks: &[Option<Block>],
        positions: &NodePositions,
        rows: &LayerRows,
    ) -> HashMap<(End, End, usize), Vec<(f32, f32)>> {
        let arrivals = self.spread_arrivals(nodes, edges, members, blocks, positions);
        let mut paths = HashMap::new();
        for (index, edge) in edges.iter().enumerate() {
            let (top, bottom) = (edge.chain[0], *edge.chain.last().expect("chains have two ends"));
            let (top_offset, bottom_offset) = if edge.reversed {
                (nodes[top].attach, nodes[bottom].attach)
            } else {
                let arrival = arrivals.get(&index).copied().unwrap_or_else(|| self.in_offset(&nodes[bottom], edge.via, members, blocks));
                (self.out_offset(&nodes[top], edge.via, members, blocks), arrival)
            };
            let mut points = curve_through(&route_corners(nodes, edge, positions, rows, top_offset, bottom_offset));
            if edge.reversed {
                points.reverse();
            }
            let end = |index: usize| match nodes[index].kind {
                NodeKind::Member(slot) => End::Member(slot),
                NodeKind::Entry(_) => End::Entry,
                NodeKind::Exit(_) => End::Exit,
                NodeKind::Dummy => unreachable!("dummies are never the ends of an edge"),
            };
            // A reversed edge was turned round for layering: file it under its own ends.
            let (from, to) = if edge.reversed { (edge.target, edge.source) } else { (edge.source, edge.target) };
            paths.insert((end(from), end(to), edge.via), points);
        }
        paths
    }

    /// Where an edge from `via` leaves `node`, from its left side.
    fn out_offset(&self, node: &LocalNode, via: usize, members: &[Member], blocks: &[Option<Block>]) -> f32 {
        match node.kind {
            NodeKind::Member(slot) => match members[slot] {
                Member::Box(_) => node.attach,
                Member::Cluster(child) => blocks[child].as_ref().and_then(|block| block.bottom_ports.get(&via).copied()).unwrap_or(node.attach),
            },
            _ => 0.0,
        }
    }

    /// Where an edge from `via` enters `node`, from its left side.
    fn in_offset(&self, node: &LocalNode, via: usize, members: &[Member], blocks: &[Option<Block>]) -> f32 {
        match node.kind {
            NodeKind::Member(slot) => match members[slot] {
                Member::Box(_) => node.attach,
                Member::Cluster(child) => blocks[child].as_ref().and_then(|block| block.top_ports.get(&via).copied()).unwrap_or(node.attach),
            },
            _ => 0.0,
        }
    }

    /// Every edge's chain cut into its links. An edge's first and last link attach where
    /// the edge leaves and enters its ends (a child cluster's port for the edge's source);
    /// the links between dummies, and all links of a reversed edge, attach at the nodes'
    /// usual points.
    fn layer_links(&self, nodes: &[LocalNode], edges: &[LocalEdge], members: &[Member], blocks: &[Option<Block>]) -> Vec<LayerLink> {
        let mut links = Vec::new();
        for edge in edges {
            let last = edge.chain.len() - 1;
            for (step, pair) in edge.chain.windows(2).enumerate() {
                let (upper, lower) = (pair[0], pair[1]);
                let upper_offset =
                    if step == 0 && !edge.reversed { self.out_offset(&nodes[upper], edge.via, members, blocks) } else { nodes[upper].attach };
                let lower_offset =
                    if step + 1 == last && !edge.reversed { self.in_offset(&nodes[lower], edge.via, members, blocks) } else { nodes[lower].attach };
                links.push(LayerLink { upper, lower, upper_offset, lower_offset });
            }
        }
        links
    }

    /// The whole route of one model edge: up out of the clusters around its source, across
    /// the innermost cluster holding both ends, down into the clusters around its target.
    fn compose_path(&self, source: usize, target: usize, blocks: &[Block], origins: &[(f32, f32)]) -> Vec<(f32, f32)> {
        let source_chain = self.ancestors(source);
        let target_chain = self.ancestors(target);
        let common = *source_chain.iter().find(|cluster| target_chain.contains(cluster)).expect("the root holds everything");
        let mut pieces: Vec<(usize, (End, End, usize))> = Vec::new();
        for &cluster in source_chain.iter().take_while(|&&cluster| cluster != common) {
            let slot = self.member_holding(cluster, source).expect("inside");
            pieces.push((cluster, (End::Member(slot), End::Exit, source)));
        }
        let (from, to) = (self.member_holding(common, source).expect("inside"), self.member_holding(common, target).expect("inside"));
        pieces.push((common, (End::Member(from), End::Member(to), source)));
        for &cluster in target_chain.iter().take_while(|&&cluster| cluster != common).collect::<Vec<_>>().iter().rev() {
            let slot = self.member_holding(*cluster, target).expect("inside");
            pieces.push((*cluster, (End::Entry, End::Member(slot), source)));
        }
        let mut points: Vec<(f32, f32)> = Vec::new();
        for (cluster, key) in pieces {
            let Some(path) = blocks[cluster].paths.get(&key) else { continue };
            let (dx, dy) = origins[cluster];
            for &(x, y) in path {
                let point = (x + dx, y + dy);
                if points.last().is_none_or(|last| (last.0 - point.0).abs() > 0.01 || (last.1 - point.1).abs() > 0.01) {
                    points.push(point);
                }
            }
        }
        points
    }
}

/// Reverses the back edges of a depth-first search that starts from the entry ports and
/// then the members in execution order.
fn break_cycles(nodes: &[LocalNode], edges: &mut [LocalEdge]) {
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (index, edge) in edges.iter().enumerate() {
        outgoing[edge.source].push(index);
    }
    // 0: not seen, 1: on the stack, 2: done.
    let mut state = vec![0u8; nodes.len()];
    let mut starts: Vec<usize> = (0..nodes.len()).collect();
    starts.sort_by(|&a, &b| {
        let rank = |index: usize| match nodes[index].kind {
            NodeKind::Entry(_) => 0,
            NodeKind::Member(_) => 1,
            _ => 2,
        };
        rank(a).cmp(&rank(b)).then(nodes[a].key.total_cmp(&nodes[b].key))
    });
    let mut back = Vec::new();
    for start in starts {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&edge) = outgoing[node].get(*next) {
                *next += 1;
                let target = edges[edge].target;
                match state[target] {
                    0 => {
                        state[target] = 1;
                        stack.push((target, 0));
                    }
                    1 => back.push(edge),
                    _ => {}
                }
            } else {
                state[node] = 2;
                stack.pop();
            }
        }
    }
    for edge in back {
        let edge = &mut edges[edge];
        std::mem::swap(&mut edge.source, &mut edge.target);
        edge.reversed = true;
    }
}

/// Longest-path layers: entry ports on layer 0, members below them, sources pulled down
/// to just above their first consumer, exit ports on a last layer of their own.
/// Returns the number of layers.
fn assign_layers(nodes: &mut [LocalNode], edges: &[LocalEdge]) -> usize {
    let count = nodes.len();
    let mut incoming = vec![0usize; count];
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); count];
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); count];
    for edge in edges {
        incoming[edge.target] += 1;
        outgoing[edge.source].push(edge.target);
        predecessors[edge.target].push(edge.source);
    }
    let has_entries = nodes.iter().any(|node| matches!(node.kind, NodeKind::Entry(_)));
    let base = usize::from(has_entries);
    let mut queue: Vec<usize> = (0..count).filter(|&index| incoming[index] == 0).collect();
    let mut topological = Vec::with_capacity(count);
    while let Some(index) = queue.pop() {
        topological.push(index);
        for &next in &outgoing[index] {
            incoming[next] -= 1;
            if incoming[next] == 0 {
                queue.push(next);
            }
        }
    }
    for &index in &topological {
        nodes[index].layer = match nodes[index].kind {
            NodeKind::Entry(_) => 0,
            _ => predecessors[index].iter().map(|&p| nodes[p].layer + 1).max().unwrap_or(base).max(base),
        };
    }
    for &index in topological.iter().rev() {
        if matches!(nodes[index].kind, NodeKind::Member(_)) && predecessors[index].is_empty() {
            if let Some(first_consumer) = outgoing[index].iter().map(|&next| nodes[next].layer).min() {
                nodes[index].layer = first_consumer.saturating_sub(1).max(base);
            }
        }
    }
    let last_member = nodes.iter().filter(|node| !matches!(node.kind, NodeKind::Exit(_))).map(|node| node.layer).max().unwrap_or(0);
    let mut layer_count = last_member + 1;
    for node in nodes.iter_mut() {
        if matches!(node.kind, NodeKind::Exit(_)) {
            node.layer = last_member + 1;
            layer_count = last_member + 2;
        }
    }
    layer_count
}

/// Splits every edge that spans more than one layer with a dummy node per layer crossed.
/// Dummies take the execution order of the edge's target, so a skip connection keeps
/// to one side of the chain it runs beside.
fn add_dummies(nodes: &mut Vec<LocalNode>, edges: &mut [LocalEdge]) {
    for edge in edges.iter_mut() {
        let (top, bottom) = (edge.source, edge.target);
        edge.chain = vec![top];
        let key = if matches!(nodes[bottom].kind, NodeKind::Exit(_)) { nodes[top].key + 0.25 } else { nodes[bottom].key };
        for layer in nodes[top].layer + 1..nodes[bottom].layer {
            nodes.push(LocalNode { kind: NodeKind::Dummy, width: 0.0, attach: 0.0, height: 0.0, layer, key });
            edge.chain.push(nodes.len() - 1);
        }
        edge.chain.push(bottom);
    }
}

/// Orders each layer by barycentre sweeps, keeping the ordering with fewest crossings.
fn order_layers(nodes: &[LocalNode], links: &[LayerLink], layers: &mut [Vec<usize>]) {
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for link in links {
        down[link.upper].push(link.lower);
        up[link.lower].push(link.upper);
    }
    for layer in layers.iter_mut() {
        layer.sort_by(|&a, &b| nodes[a].key.total_cmp(&nodes[b].key));
    }
    let mut position = vec![0.0f32; nodes.len()];
    let update = |layers: &[Vec<usize>], position: &mut [f32]| {
        for layer in layers {
            for (slot, &index) in layer.iter().enumerate() {
                position[index] = slot as f32;
            }
        }
    };
    update(layers, &mut position);
    let sweep = |layers: &mut [Vec<usize>], position: &mut [f32], downward: bool| {
        let order: Vec<usize> = if downward { (1..layers.len()).collect() } else { (0..layers.len().saturating_sub(1)).rev().collect() };
        for layer in order {
            let neighbours = if downward { &up } else { &down };
            let mut keyed: Vec<(f32, f32, usize)> = layers[layer]
                .iter()
                .map(|&index| {
                    let around = &neighbours[index];
                    let centre = if around.is_empty() {
                        position[index]
                    } else {
                        around.iter().map(|&other| position[other]).sum::<f32>() / around.len() as f32
                    };
                    (centre, nodes[index].key, index)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            layers[layer] = keyed.into_iter().map(|(_, _, index)| index).collect();
            for (slot, &index) in layers[layer].iter().enumerate() {
                position[index] = slot as f32;
            }
        }
    };
    sweep(layers, &mut position, true);
    let mut best = layers.to_vec();
    let mut best_crossings = crossings(nodes, links, &position);
    for round in 0..12 {
        sweep(layers, &mut position, round % 2 == 1);
        let now = crossings(nodes, links, &position);
        if now < best_crossings {
            best_crossings = now;
            best = layers.to_vec();
        }
        if best_crossings == 0 {
            break;
        }
    }
    layers.clone_from_slice(&best);
}

fn crossings(nodes: &[LocalNode], links: &[LayerLink], position: &[f32]) -> usize {
    let mut count = 0;
    for (index, a) in links.iter().enumerate() {
        for b in &links[index + 1..] {
            // Every link spans one layer gap, so links from the same layer end on the same one.
            if nodes[a.upper].layer != nodes[b.upper].layer || a.upper == b.upper || a.lower == b.lower {
                continue;
            }
            if (position[a.upper] - position[b.upper]) * (position[a.lower] - position[b.lower]) < 0.0 {
                count += 1;
            }
        }
    }
    count
}

/// Left x of every node: packed, then alternating sweeps towards the weighted mean of the
/// neighbours' attachment points, each layer solved exactly under its separations.
fn assign_x(nodes: &[LocalNode], links: &[LayerLink], layers: &[Vec<usize>]) -> Vec<f32> {
    let mut xs = vec![0.0f32; nodes.len()];
    let gap = |a: usize, b: usize| {
        let is_line = |index: usize| !matches!(nodes[index].kind, NodeKind::Member(_));
        if is_line(a) || is_line(b) {
            LINE_GAP
        } else {
            NODE_GAP
        }
    };
    for layer in layers {
        let mut x = 0.0;
        for (slot, &index) in layer.iter().enumerate() {
            if slot > 0 {
                x += gap(layer[slot - 1], index);
            }
            xs[index] = x;
            x += nodes[index].width;
        }
    }
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (index, link) in links.iter().enumerate() {
        down[link.upper].push(index);
        up[link.lower].push(index);
    }
    // Down, up, down, ...: the last round goes down, so every box ends up below the
    // boxes that feed it and a chain is one straight column; the up rounds before it
    // move sources and entry ports over what they feed.
    let rounds = 15;
    for round in 0..rounds {
        let (use_up, use_down) = (round % 2 == 0, round % 2 == 1);
        let order: Vec<usize> = if use_down { (0..layers.len()).rev().collect() } else { (0..layers.len()).collect() };
        for layer in order {
            let layer = &layers[layer];
            if layer.is_empty() {
                continue;
            }
            let mut targets = Vec::with_capacity(layer.len());
            let mut weights = Vec::with_capacity(layer.len());
            for &index in layer {
                let mut wanted: Vec<(f32, f32)> = Vec::new();
                let dummy = nodes[index].kind == NodeKind::Dummy;
                // A dummy follows its own chain (so long edges run straight) and gives
                // way to boxes where a tensor fans out (so the chain stays under its
                // source and the skip connection moves aside); a box follows the boxes it
                // connects to rather than a passing long edge (so a skip connection bends
                // into its `add`).
                let weight_of = |other: usize| match (dummy, nodes[other].kind == NodeKind::Dummy) {
                    (true, true) => 8.0,
                    (true, false) => 0.01,
                    (false, true) => 0.5,
                    (false, false) => 1.0,
                };
                if use_up {
                    for &link in &up[index] {
                        let link = &links[link];
                        wanted.push((xs[link.upper] + link.upper_offset - link.lower_offset, weight_of(link.upper)));
                    }
                }
                if use_down {
                    for &link in &down[index] {
                        let link = &links[link];
                        wanted.push((xs[link.lower] + link.lower_offset - link.upper_offset, weight_of(link.lower)));
                    }
                }
                match weighted_median(&mut wanted) {
                    Some((target, weight)) => {
                        targets.push(target);
                        weights.push(weight);
                    }
                    None => {
                        targets.push(xs[index]);
                        weights.push(0.05);
                    }
                }
            }
            let mut separations = Vec::with_capacity(layer.len());
            let mut offset = 0.0;
            for (slot, &index) in layer.iter().enumerate() {
                if slot > 0 {
                    offset += nodes[layer[slot - 1]].width + gap(layer[slot - 1], index);
                }
                separations.push(offset);
            }
            let shifted: Vec<f32> = targets.iter().zip(&separations).map(|(target, offset)| target - offset).collect();
            let solved = isotonic(&shifted, &weights);
            for (slot, &index) in layer.iter().enumerate() {
                xs[index] = solved[slot] + separations[slot];
            }
        }
    }
    xs
}

/// The weighted median of (value, weight) pairs and the total weight; halfway between
/// the two middle values when the weight splits evenly (a node below two equal
/// branches sits between them).
fn weighted_median(pairs: &mut [(f32, f32)]) -> Option<(f32, f32)> {
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f32 = pairs.iter().map(|pair| pair.1).sum();
    let mut below = 0.0;
    for (index, &(value, weight)) in pairs.iter().enumerate() {
        below += weight;
        if (below - total / 2.0).abs() < 1e-4 && index + 1 < pairs.len() {
            return Some(((value + pairs[index + 1].0) / 2.0, total));
        }
        if below > total / 2.0 {
            return Some((value, total));
        }
    }
    pairs.last().map(|pair| (pair.0, total))
}

/// The non-decreasing sequence closest to `values` in weighted least squares
/// (pool adjacent violators).
fn isotonic(values: &[f32], weights: &[f32]) -> Vec<f32> {
    // Blocks of (mean, weight, length).
    let mut blocks: Vec<(f32, f32, usize)> = Vec::with_capacity(values.len());
    for (&value, &weight) in values.iter().zip(weights) {
        blocks.push((value, weight, 1));
        while blocks.len() > 1 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (mean_b, weight_b, length_b) = blocks.pop().expect("two blocks");
            let (mean_a, weight_a, length_a) = blocks.pop().expect("two blocks");
            let weight = weight_a + weight_b;
            blocks.push(((mean_a * weight_a + mean_b * weight_b) / weight, weight, length_a + length_b));
        }
    }
    blocks.into_iter().flat_map(|(mean, _, length)| std::iter::repeat_n(mean, length)).collect()
}

/// Node indices grouped by layer, each layer in index order (members, then ports, then
/// dummies), the starting point of `order_layers`.
fn nodes_by_layer(nodes: &[LocalNode], layer_count: usize) -> Vec<Vec<usize>> {
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layer_count];
    for (index, node) in nodes.iter().enumerate() {
        layers[node.layer].push(index);
    }
    layers
}

/// The layers of one cluster stacked top to bottom, in the block's coordinates.
struct LayerRows {
    /// Per layer, the y of its top (not rounded).
    top: Vec<f32>,
    /// Per layer, the height of its tallest node.
    height: Vec<f32>,
    /// The block's height, before it is rounded up to a whole pixel.
    block_height: f32,
}

/// Stacks the layers top to bottom below the label band: every layer as tall as its
/// tallest member, members at its top (a box beside a tall block starts level with it,
/// as both read the same input). Entry
/// ports sit below the label band, reached by a straight stub from the frame's top, so
/// arrows fan out below the label, not through it. The frame ends a padding below the
/// last members, or at the exit ports' layer when there are exit ports, so that the
/// lines leaving the block end on its bottom side; the root, which has no frame, ends at
/// its last members.
fn stack_layers(nodes: &[LocalNode], layer_count: usize, label: Size, is_root: bool) -> LayerRows {
    let label_band = if is_root { 0.0 } else { label.height + 2.0 * LABEL_PAD };
    let has_entry_ports = nodes.iter().any(|node| matches!(node.kind, NodeKind::Entry(_)));
    let has_exit_ports = nodes.iter().any(|node| matches!(node.kind, NodeKind::Exit(_)));
    let mut layer_top = vec![0.0f32; layer_count];
    let mut layer_height = vec![0.0f32; layer_count];
    for node in nodes {
        layer_height[node.layer] = layer_height[node.layer].max(node.height);
    }
    let last_member_layer = nodes.iter().filter(|node| matches!(node.kind, NodeKind::Member(_))).map(|node| node.layer).max().unwrap_or(0);
    let mut y = label_band;
    for layer in 0..layer_count {
        if layer > last_member_layer {
            y += CLUSTER_PAD_BOTTOM - LAYER_GAP;
        } else if layer == 1 && has_entry_ports {
            y += ENTRY_GAP - LAYER_GAP;
        }
        layer_top[layer] = y;
        y += layer_height[layer] + LAYER_GAP;
    }
    let content_bottom = layer_top[last_member_layer] + layer_height[last_member_layer];
    let block_height = if is_root {
        content_bottom
    } else if !has_exit_ports {
        content_bottom + CLUSTER_PAD_BOTTOM
    } else {
        layer_top[layer_count - 1]
    };
    LayerRows { top: layer_top, height: layer_height, block_height }
}

/// How wide one cluster's block is, how far its contents move right from where
/// `assign_x` put them, and where its label starts from the frame's left side.
struct Frame {
    width: f32,
    shift: f32,
    label_x: f32,
}

/// Sizes the frame across, with the contents one padding in from its sides, and places
/// the label. The label goes top left, or top right, where no entry stub crosses it;
/// else just left of the first stub or right of the last, widening the frame if need
/// be. A label wider than contents without entry ports widens the frame, and the
/// contents move to its middle.
fn fit_frame(nodes: &[LocalNode], xs: &[f32], label: Size, is_root: bool) -> Frame {
    let pad = if is_root { 0.0 } else { CLUSTER_PAD };
    let left = xs.iter().copied().fold(f32::MAX, f32::min);
    let right = nodes.iter().zip(xs).map(|(node, x)| x + node.width).fold(f32::MIN, f32::max);
    let mut width = (right - left + 2.0 * pad).ceil();
    let mut shift = pad - left;
    let mut label_x = pad;
    if !is_root {
        let label_width = label.width;
        let ports: Vec<f32> =
            nodes.iter().zip(xs).filter(|(node, _)| matches!(node.kind, NodeKind::Entry(_))).map(|(_, x)| (x + shift).round()).collect();
        let clear =
            |from: f32| from >= pad && from + label_width <= width - pad && ports.iter().all(|&x| x < from - 6.0 || x > from + label_width + 6.0);
        let first = ports.iter().copied().fold(f32::MAX, f32::min);
        let last = ports.iter().copied().fold(f32::MIN, f32::max);
        if clear(pad) {
            label_x = pad;
        } else if clear(width - pad - label_width) {
            label_x = width - pad - label_width;
        } else if ports.is_empty() {
            // Wider than the contents, which move to the middle.
            let wider = (label_width + 2.0 * pad).ceil();
            shift += (wider - width) / 2.0;
            width = wider;
        } else if first - 8.0 - label_width >= pad {
            label_x = first - 8.0 - label_width;
        } else {
            label_x = last + 8.0;
            width = width.max((label_x + label_width + pad).ceil());
        }
    }
    Frame { width, shift, label_x }
}

/// Where every node of one cluster is drawn, in whole pixels of the block's coordinates:
/// its left side moved by the frame's shift, and the top of its layer.
struct NodePositions {
    x: Vec<f32>,
    y: Vec<f32>,
}

impl NodePositions {
    /// Rounds every node's left side, moved right by `shift`, and the top of its layer.
    fn new(nodes: &[LocalNode], xs: &[f32], shift: f32, rows: &LayerRows) -> NodePositions {
        let x = xs.iter().map(|x| (x + shift).round()).collect();
        let y = nodes.iter().map(|node| rows.top[node.layer].round()).collect();
        NodePositions { x, y }
    }
}

/// Source box → x of its port on the block's top (entry) and bottom (exit) side, which
/// the parent cluster reads to attach the edges outside the block.
fn port_positions(nodes: &[LocalNode], positions: &NodePositions) -> (HashMap<usize, f32>, HashMap<usize, f32>) {
    let mut top_ports = HashMap::new();
    let mut bottom_ports = HashMap::new();
    for (index, node) in nodes.iter().enumerate() {
        match node.kind {
            NodeKind::Entry(source_box) => {
                top_ports.insert(source_box, positions.x[index]);
            }
            NodeKind::Exit(source_box) => {
                bottom_ports.insert(source_box, positions.x[index]);
            }
            _ => {}
        }
    }
    (top_ports, bottom_ports)
}

/// Corners of one edge's route, from its top end to its bottom end: down out of the top
/// end to the bottom of its layer, through each dummy's layer, into the bottom end from
/// the top of its layer. Between corners the line is vertical inside a layer and may
/// only change course in the gaps, which `curve_through` rounds into curves. A route
/// from an entry port starts with the stub from the frame's top.
fn route_corners(
    nodes: &[LocalNode],
    edge: &LocalEdge,
    positions: &NodePositions,
    rows: &LayerRows,
    top_offset: f32,
    bottom_offset: f32,
) -> Vec<(f32, f32)> {
    let (x_of, y_of) = (|index: usize| positions.x[index], |index: usize| positions.y[index]);
    let (layer_top, layer_height) = (&rows.top, &rows.height);
    let (top, bottom) = (edge.chain[0], *edge.chain.last().expect("chains have two ends"));
    let mut corners = vec![(x_of(top) + top_offset, y_of(top) + nodes[top].height)];
    if matches!(nodes[top].kind, NodeKind::Entry(_)) {
        corners.insert(0, (x_of(top), 0.0));
    }
    corners.push((x_of(top) + top_offset, layer_top[nodes[top].layer] + layer_height[nodes[top].layer]));
    for &dummy in &edge.chain[1..edge.chain.len() - 1] {
        let layer = nodes[dummy].layer;
        corners.push((x_of(dummy), layer_top[layer]));
        corners.push((x_of(dummy), layer_top[layer] + layer_height[layer]));
    }
    corners.push((x_of(bottom) + bottom_offset, layer_top[nodes[bottom].layer]));
    corners.push((x_of(bottom) + bottom_offset, y_of(bottom)));
    corners
}

/// How far a line drops straight below a box before it may turn: the shape label sits
/// in that band, clear of turning lines.
const STRAIGHT_DROP: f32 = 14.0;

/// Points along the route through `corners`: vertical runs stay straight, and each change
/// of x between two layers drops straight first and then becomes a cubic curve that
/// leaves and arrives vertically.
fn curve_through(corners: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut points: Vec<(f32, f32)> = Vec::new();
    let push = |point: (f32, f32), points: &mut Vec<(f32, f32)>| {
        if points.last().is_none_or(|last: &(f32, f32)| (last.0 - point.0).abs() > 0.01 || (last.1 - point.1).abs() > 0.01) {
            points.push(point);
        }
    };
    for (index, &corner) in corners.iter().enumerate() {
        if index > 0 {
            let previous = corners[index - 1];
            if (previous.0 - corner.0).abs() > 0.5 && corner.1 - previous.1 > 1.0 {
                let previous = if corner.1 - previous.1 > 2.0 * STRAIGHT_DROP {
                    let dropped = (previous.0, previous.1 + STRAIGHT_DROP);
                    push(dropped, &mut points);
                    dropped
                } else {
                    previous
                };
                let half = (corner.1 - previous.1) / 2.0;
                let controls = [previous, (previous.0, previous.1 + half), (corner.0, corner.1 - half), corner];
                const STEPS: usize = 12;
                for step in 1..STEPS {
                    let t = step as f32 / STEPS as f32;
                    let u = 1.0 - t;
                    let weights = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
                    let x = controls.iter().zip(weights).map(|(p, w)| p.0 * w).sum();
                    let y = controls.iter().zip(weights).map(|(p, w)| p.1 * w).sum();
                    push((x, y), &mut points);
                }
            }
        }
        push(corner, &mut points);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(count: usize) -> Vec<Size> {
        vec![Size { width: 60.0, height: 24.0 }; count]
    }

    fn inside(outer: Rect, inner: Rect) -> bool {
        inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height
    }

    #[test]
    fn a_chain_is_one_straight_column() {
        let input = LayoutInput {
            boxes: boxes(4),
            reach: Vec::new(),
            clusters: vec![ClusterInput { members: (0..4).map(Member::Box).collect(), label: Size { width: 0.0, height: 0.0 } }],
            edges: vec![(0, 1), (1, 2), (2, 3)],
        };
        let layout = layout(&input);
        assert!(layout.boxes.iter().all(|rect| rect.x == layout.boxes[0].x));
        assert!(layout.boxes.windows(2).all(|pair| pair[1].y > pair[0].y + pair[0].height));
        for (edge, &(source, target)) in layout.edges.iter().zip(&input.edges) {
            let (from, to) = (layout.boxes[source], layout.boxes[target]);
            assert_eq!(edge.first().copied(), Some((from.x + 30.0, from.y + from.height)));
            assert_eq!(edge.last().copied(), Some((to.x + 30.0, to.y)));
        }
    }

    #[test]
    fn clusters_hold_their_boxes_and_skip_edges_pass_beside() {
        // 0 → [cluster 1: 1 → 2 → 3] → 4, with a skip 0 → 3 into the cluster and a
        // nested cluster 2 around 1 and 2.
        let input = LayoutInput {
            boxes: boxes(5),
            reach: Vec::new(),
            clusters: vec![
                ClusterInput { members: vec![Member::Box(0), Member::Cluster(1), Member::Box(4)], label: Size { width: 0.0, height: 0.0 } },
                ClusterInput { members: vec![Member::Cluster(2), Member::Box(3)], label: Size { width: 40.0, height: 12.0 } },
                ClusterInput { members: vec![Member::Box(1), Member::Box(2)], label: Size { width: 200.0, height: 12.0 } },
            ],
            edges: vec![(0, 1), (1, 2), (2, 3), (0, 3), (3, 4)],
        };
        let layout = layout(&input);
        for (cluster, members) in [(1, vec![1, 2, 3]), (2, vec![1, 2])] {
            for index in members {
                assert!(inside(layout.clusters[cluster], layout.boxes[index]), "box {index} in cluster {cluster}: {:?}", layout);
            }
        }
        assert!(inside(layout.clusters[1], layout.clusters[2]));
        assert!(layout.clusters[2].width >= 200.0 + 2.0 * CLUSTER_PAD);
        for (cluster, index) in [(1, 0), (1, 4), (2, 3)] {
            let (outer, rect) = (layout.clusters[cluster], layout.boxes[index]);
            let overlaps =
                rect.x < outer.x + outer.width && outer.x < rect.x + rect.width && rect.y < outer.y + outer.height && outer.y < rect.y + rect.height;
            assert!(!overlaps, "box {index} is outside cluster {cluster}");
        }
        // The skip edge starts at box 0, ends on box 3 and never enters cluster 2.
        let skip = &layout.edges[3];
        let (from, to) = (layout.boxes[0], layout.boxes[3]);
        assert_eq!(skip.first().copied(), Some((from.x + 30.0, from.y + from.height)));
        // Box 3 has two arrows coming in: they arrive side by side on its top.
        let (end_x, end_y) = skip.last().copied().unwrap();
        let (other_x, _) = layout.edges[2].last().copied().unwrap();
        assert!(end_y == to.y && end_x > to.x && end_x < to.x + to.width && end_x != other_x, "{skip:?}");
        let nested = layout.clusters[2];
        assert!(skip.iter().all(|&(x, y)| !(x > nested.x && x < nested.x + nested.width && y > nested.y && y < nested.y + nested.height)));
    }

    /// A small deterministic generator, so the random cases are the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % bound.max(1)
        }
    }

    #[test]
    fn random_compound_graphs_keep_boxes_in_their_clusters() {
        let mut random = Lcg(7);
        for case in 0..200 {
            // Clusters as a random tree, boxes in random clusters, edges mostly forward
            // with some backward ones (cycles are broken, not refused).
            let cluster_count = 1 + random.below(6);
            let mut clusters: Vec<ClusterInput> = (0..cluster_count)
                .map(|_| ClusterInput { members: Vec::new(), label: Size { width: 30.0 + random.below(200) as f32, height: 11.0 } })
                .collect();
            let mut parent = vec![0; cluster_count];
            for child in 1..cluster_count {
                parent[child] = random.below(child);
                clusters[parent[child]].members.push(Member::Cluster(child));
            }
            let box_count = cluster_count * 2 + random.below(12);
            let boxes: Vec<Size> =
                (0..box_count).map(|_| Size { width: 40.0 + random.below(80) as f32, height: 26.0 + 13.0 * random.below(2) as f32 }).collect();
            let mut holder = vec![0; box_count];
            for (index, holder) in holder.iter_mut().enumerate() {
                // Every cluster gets at least one box, so none is empty.
                *holder = if index < cluster_count { index } else { random.below(cluster_count) };
                clusters[*holder].members.push(Member::Box(index));
            }
            let mut edges = Vec::new();
            for _ in 0..box_count + random.below(box_count * 2) {
                let (a, b) = (random.below(box_count), random.below(box_count));
                let (from, to) = if random.below(10) == 0 { (a.max(b), a.min(b)) } else { (a.min(b), a.max(b)) };
                if from != to && !edges.contains(&(from, to)) {
                    edges.push((from, to));
                }
            }
            let reach = boxes.iter().map(|size| size.width / 2.0 + random.below(90) as f32).collect();
            let input = LayoutInput { boxes, reach, clusters, edges };
            let layout = layout(&input);
            for (index, &rect) in layout.boxes.iter().enumerate() {
                let mut cluster = holder[index];
                while cluster != 0 {
                    assert!(inside(layout.clusters[cluster], rect), "case {case}: box {index} outside cluster {cluster}");
                    cluster = parent[cluster];
                }
                for (other, &rect_other) in layout.boxes.iter().enumerate().skip(index + 1) {
                    let overlaps = rect.x < rect_other.x + rect_other.width
                        && rect_other.x < rect.x + rect.width
                        && rect.y < rect_other.y + rect_other.height
                        && rect_other.y < rect.y + rect.height;
                    assert!(!overlaps, "case {case}: boxes {index} and {other} overlap");
                }
            }
            // Frames hold nothing but their own boxes and clusters.
            let overlap = |a: Rect, b: Rect| a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
            let within = |mut cluster: usize, ancestor: usize| loop {
                if cluster == ancestor {
                    break true;
                }
                if cluster == 0 {
                    break false;
                }
                cluster = parent[cluster];
            };
            for cluster in 1..cluster_count {
                for (index, &rect) in layout.boxes.iter().enumerate() {
                    assert!(
                        within(holder[index], cluster) || !overlap(layout.clusters[cluster], rect),
                        "case {case}: box {index} overlaps cluster {cluster}"
                    );
                }
                for other in cluster + 1..cluster_count {
                    let nested = within(cluster, other) || within(other, cluster);
                    assert!(
                        nested || !overlap(layout.clusters[cluster], layout.clusters[other]),
                        "case {case}: clusters {cluster} and {other} overlap"
                    );
                }
            }
            for (path, &(from, to)) in layout.edges.iter().zip(&input.edges) {
                let (source, target) = (layout.boxes[from], layout.boxes[to]);
                let (first, last) = (path.first().copied().unwrap(), path.last().copied().unwrap());
                // Forward edges run from the source's bottom to the target's top; edges
                // turned round to break a cycle from the source's top to the target's bottom.
                let on_side = |point: (f32, f32), rect: Rect| {
                    point.0 >= rect.x && point.0 <= rect.x + rect.width && (point.1 == rect.y || point.1 == rect.y + rect.height)
                };
                assert!(on_side(first, source) && on_side(last, target), "case {case}: edge {from} → {to} runs {first:?} → {last:?}");
            }
        }
    }

    /// Every edge's points to two decimals (the precision the SVG writes), one string per edge.
    fn routes(layout: &Layout) -> Vec<String> {
        layout.edges.iter().map(|points| points.iter().map(|(x, y)| format!("{x:.2},{y:.2}")).collect::<Vec<_>>().join(" ")).collect()
    }

    /// The whole layout of one small compound graph that goes through every step of
    /// `layout_cluster`: nested clusters with labels wider than their contents, a box whose
    /// shape label reaches past its right side, a taller box, entry and exit ports, a skip
    /// edge into a cluster, two arrows arriving on one box, a long edge with dummies and a
    /// back edge turned round to break a cycle.
    ///
    /// The numbers were recorded from the implementation before `layout_cluster` was split
    /// into named steps. They pin its behaviour, so that a refactor cannot move a box or a
    /// line unnoticed; they are not a reference from outside, and a deliberate change to the
    /// layout records them again.
    #[test]
    fn a_small_compound_graph_keeps_its_recorded_layout() {
        let size = |width, height| Size { width, height };
        let input = LayoutInput {
            boxes: vec![size(60.0, 24.0), size(80.0, 24.0), size(50.0, 37.0), size(70.0, 24.0), size(60.0, 24.0), size(40.0, 24.0)],
            reach: vec![60.0, 80.0, 90.0, 70.0, 60.0, 40.0],
            clusters: vec![
                ClusterInput { members: vec![Member::Box(0), Member::Cluster(1), Member::Box(4), Member::Box(5)], label: size(0.0, 0.0) },
                ClusterInput { members: vec![Member::Cluster(2), Member::Box(3)], label: size(40.0, 12.0) },
                ClusterInput { members: vec![Member::Box(1), Member::Box(2)], label: size(200.0, 12.0) },
            ],
            edges: vec![(0, 1), (1, 2), (2, 3), (0, 3), (3, 4), (1, 4), (0, 5), (4, 5), (5, 0)],
        };
        let layout = layout(&input);
        assert_eq!((layout.width, layout.height), (332.0, 479.0));
        let corners: Vec<(f32, f32)> = layout.boxes.iter().map(|rect| (rect.x, rect.y)).collect();
        assert_eq!(corners, vec![(41.0, 0.0), (24.0, 158.0), (39.0, 220.0), (29.0, 313.0), (11.0, 393.0), (160.0, 455.0)]);
        let frames: Vec<(f32, f32, f32, f32)> = layout.clusters.iter().map(|rect| (rect.x, rect.y, rect.width, rect.height)).collect();
        assert_eq!(frames, vec![(0.0, 0.0, 332.0, 479.0), (0.0, 62.0, 308.0, 293.0), (12.0, 110.0, 272.0, 165.0)]);
        assert_eq!(layout.label_x, vec![0.0, 12.0, 60.0]);
        let expected_routes = [
            "71.00,24.00 71.00,38.00 70.90,40.76 70.63,43.11 70.22,45.12 69.70,46.89 69.12,48.49 68.50,50.00 67.88,51.51 \
             67.30,53.11 66.78,54.88 66.37,56.89 66.10,59.24 66.00,62.00 66.00,88.00 65.96,90.53 65.85,92.69 65.69,94.53 \
             65.48,96.15 65.25,97.61 65.00,99.00 64.75,100.39 64.52,101.85 64.31,103.47 64.15,105.31 64.04,107.47 64.00,110.00 \
             64.00,136.00 64.00,158.00",
            "64.00,182.00 64.00,220.00",
            "64.00,257.00 64.00,275.00 64.00,313.00",
            "71.00,24.00 71.00,38.00 70.90,40.76 70.63,43.11 70.22,45.12 69.70,46.89 69.12,48.49 68.50,50.00 67.88,51.51 \
             67.30,53.11 66.78,54.88 66.37,56.89 66.10,59.24 66.00,62.00 66.00,88.00 70.53,90.53 83.04,92.69 101.94,94.53 \
             125.63,96.15 152.52,97.61 181.00,99.00 209.48,100.39 236.37,101.85 260.06,103.47 278.96,105.31 291.47,107.47 296.00,110.00 \
             296.00,275.00 296.00,289.00 291.71,291.76 279.85,294.11 261.94,296.12 239.48,297.89 214.00,299.49 187.00,301.00 160.00,302.51 \
             134.52,304.11 112.06,305.88 94.15,307.89 82.29,310.24 78.00,313.00",
            "64.00,337.00 64.00,355.00 64.00,369.00 63.55,371.76 62.30,374.11 60.41,376.12 58.04,377.89 55.35,379.49 52.50,381.00 \
             49.65,382.51 46.96,384.11 44.59,385.88 42.70,387.89 41.45,390.24 41.00,393.00",
            "64.00,182.00 64.00,196.00 63.27,198.76 61.26,201.11 58.22,203.12 54.41,204.89 50.08,206.49 45.50,208.00 40.92,209.51 \
             36.59,211.11 32.78,212.88 29.74,214.89 27.73,217.24 27.00,220.00 27.00,257.00 27.00,275.00 27.00,289.00 26.80,291.76 \
             26.26,294.11 25.44,296.12 24.41,297.89 23.24,299.49 22.00,301.00 20.76,302.51 19.59,304.11 18.56,305.88 17.74,307.89 \
             17.20,310.24 17.00,313.00 17.00,337.00 17.00,355.00 17.00,369.00 17.20,371.76 17.74,374.11 18.56,376.12 19.59,377.89 \
             20.76,379.49 22.00,381.00 23.24,382.51 24.41,384.11 25.44,385.88 26.26,387.89 26.80,390.24 27.00,393.00",
            "71.00,24.00 71.00,38.00 75.90,40.76 89.44,43.11 109.91,45.12 135.56,46.89 164.66,48.49 195.50,50.00 226.34,51.51 \
             255.44,53.11 281.09,54.88 301.56,56.89 315.10,59.24 320.00,62.00 320.00,355.00 320.00,393.00 320.00,417.00 320.00,431.00 \
             317.52,433.76 310.67,436.11 300.31,438.12 287.33,439.89 272.60,441.49 257.00,443.00 241.40,444.51 226.67,446.11 213.69,447.88 \
             203.33,449.89 196.48,452.24 194.00,455.00",
            "41.00,417.00 41.00,431.00 43.73,433.76 51.30,436.11 62.72,438.12 77.04,439.89 93.29,441.49 110.50,443.00 127.71,444.51 \
             143.96,446.11 158.28,447.88 169.70,449.89 177.27,452.24 180.00,455.00",
            "180.00,455.00 182.99,452.24 191.26,449.89 203.75,447.88 219.41,446.11 237.18,444.51 256.00,443.00 274.82,441.49 292.59,439.89 \
             308.25,438.12 320.74,436.11 329.01,433.76 332.00,431.00 332.00,417.00 332.00,393.00 332.00,355.00 332.00,62.00 326.86,59.24 \
             312.67,56.89 291.22,54.88 264.33,53.11 233.82,51.51 201.50,50.00 169.18,48.49 138.67,46.89 111.78,45.12 90.33,43.11 \
             76.14,40.76 71.00,38.00 71.00,24.00",
        ];
        assert_eq!(routes(&layout), expected_routes);
    }

    #[test]
    fn isotonic_pools_violators() {
        assert_eq!(isotonic(&[1.0, 3.0, 2.0, 4.0], &[1.0; 4]), vec![1.0, 2.5, 2.5, 4.0]);
        assert_eq!(isotonic(&[3.0, 1.0], &[3.0, 1.0]), vec![2.5, 2.5]);
    }
}
