//! `graph_figure` as the daemon calls it, on model graphs built by hand the way a tracer
//! records them: a ResNet-like network (stem, stages of BasicBlocks with skip `add`s,
//! a downsampling first block, avgpool, flatten, fc) and a small Transformer encoder.
//! Checks what each depth shows, when runs of blocks fold into `×N`, that shapes and
//! labels are SVG text, that the PNG decodes, and the errors.

use layerlens_render::{
    graph_figure, graph_figure_and_layout, graph_layout, BoxRole, Figure, Format, GraphEdge, GraphNode, GraphOptions, ModelGraph, RenderError,
};

/// Builds a graph op by op, in execution order, each op inside a stack of module calls.
struct Tracer {
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
    /// The module calls entered and not yet left: (path, type, call index).
    stack: Vec<(String, String, u32)>,
    calls: std::collections::HashMap<String, u32>,
}

/// A tensor: the node that made it and its shape.
type Tensor = (usize, Vec<i64>);

impl Tracer {
    fn new() -> Tracer {
        Tracer { nodes: Vec::new(), edges: Vec::new(), stack: Vec::new(), calls: Default::default() }
    }

    fn enter(&mut self, path: &str, type_name: &str) {
        let call = self.calls.entry(path.to_string()).or_insert(0);
        self.stack.push((path.to_string(), type_name.to_string(), *call));
        *call += 1;
    }

    fn leave(&mut self) {
        self.stack.pop();
    }

    /// An op in the current module call; a tensor without a node is a model input.
    fn op(&mut self, label: &str, detail: &str, inputs: &[&Tensor], shape: Vec<i64>) -> Tensor {
        let id = 100 + self.nodes.len();
        self.nodes.push(GraphNode { id, label: label.to_string(), detail: detail.to_string(), scopes: self.stack.clone() });
        for (from, input_shape) in inputs {
            if *from != usize::MAX {
                self.edges.push(GraphEdge { from: *from, to: id, shape: Some(input_shape.clone()) });
            }
        }
        (id, shape)
    }

    /// A leaf module call holding one op labelled with the module type.
    fn module(&mut self, path: &str, type_name: &str, detail: &str, inputs: &[&Tensor], shape: Vec<i64>) -> Tensor {
        self.enter(path, type_name);
        let out = self.op(type_name, detail, inputs, shape);
        self.leave();
        out
    }
}

fn with_channels(shape: &[i64], channels: i64, stride: i64) -> Vec<i64> {
    vec![shape[0], channels, shape[2] / stride, shape[3] / stride]
}

/// torchvision's BasicBlock; its one ReLU module is called twice, as in torchvision.
fn basic_block(tracer: &mut Tracer, path: &str, x: &Tensor, channels: i64, stride: i64) -> Tensor {
    tracer.enter(path, "BasicBlock");
    let in_channels = x.1[1];
    let shape = with_channels(&x.1, channels, stride);
    let stride_text = if stride > 1 { format!(", stride {stride}") } else { String::new() };
    let out = tracer.module(&format!("{path}.conv1"), "Conv2d", &format!("3×3, {in_channels}→{channels}{stride_text}"), &[x], shape.clone());
    let out = tracer.module(&format!("{path}.bn1"), "BatchNorm2d", &channels.to_string(), &[&out], shape.clone());
    let out = tracer.module(&format!("{path}.relu"), "ReLU", "", &[&out], shape.clone());
    let out = tracer.module(&format!("{path}.conv2"), "Conv2d", &format!("3×3, {channels}→{channels}"), &[&out], shape.clone());
    let out = tracer.module(&format!("{path}.bn2"), "BatchNorm2d", &channels.to_string(), &[&out], shape.clone());
    let identity = if stride > 1 || in_channels != channels {
        tracer.enter(&format!("{path}.downsample"), "Sequential");
        let down =
            tracer.module(&format!("{path}.downsample.0"), "Conv2d", &format!("1×1, {in_channels}→{channels}, stride {stride}"), &[x], shape.clone());
        let down = tracer.module(&format!("{path}.downsample.1"), "BatchNorm2d", &channels.to_string(), &[&down], shape.clone());
        tracer.leave();
        down
    } else {
        x.clone()
    };
    let sum = tracer.op("add", "", &[&out, &identity], shape.clone());
    let out = tracer.module(&format!("{path}.relu"), "ReLU", "", &[&sum], shape);
    tracer.leave();
    out
}

/// A ResNet with two BasicBlocks per stage and `stages` stages of 64, 128, 256, 512
/// channels (4 stages: ResNet-18).
fn resnet(stages: usize) -> ModelGraph {
    let mut tracer = Tracer::new();
    let x: Tensor = (usize::MAX, vec![1, 3, 224, 224]);
    let out = tracer.module("conv1", "Conv2d", "7×7, 3→64, stride 2", &[&x], vec![1, 64, 112, 112]);
    let first = out.0;
    let out = tracer.module("bn1", "BatchNorm2d", "64", &[&out], vec![1, 64, 112, 112]);
    let out = tracer.module("relu", "ReLU", "", &[&out], vec![1, 64, 112, 112]);
    let mut out = tracer.module("maxpool", "MaxPool2d", "3×3, stride 2", &[&out], vec![1, 64, 56, 56]);
    for stage in 0..stages {
        let channels = 64 << stage;
        let stride = if stage == 0 { 1 } else { 2 };
        let path = format!("layer{}", stage + 1);
        tracer.enter(&path, "Sequential");
        out = basic_block(&mut tracer, &format!("{path}.0"), &out, channels, stride);
        out = basic_block(&mut tracer, &format!("{path}.1"), &out, channels, 1);
        tracer.leave();
    }
    let channels = out.1[1];
    let out = tracer.module("avgpool", "AdaptiveAvgPool2d", "1×1", &[&out], vec![1, channels, 1, 1]);
    let out = tracer.op("flatten", "", &[&out], vec![1, channels]);
    let out = tracer.module("fc", "Linear", &format!("{channels}→10"), &[&out], vec![1, 10]);
    ModelGraph {
        title: format!("resnet-like ({stages} stages)"),
        nodes: tracer.nodes,
        edges: tracer.edges,
        inputs: vec![("x".to_string(), vec![1, 3, 224, 224], vec![first])],
        outputs: vec![("logits".to_string(), vec![1, 10], out.0)],
    }
}

/// `nn.TransformerEncoder` with post-norm layers, after an embedding and a positional add.
fn transformer(layers: usize) -> ModelGraph {
    let mut tracer = Tracer::new();
    let tokens: Tensor = (usize::MAX, vec![1, 16]);
    let shape = vec![1, 16, 64];
    let embedded = tracer.module("embed", "Embedding", "1000→64", &[&tokens], shape.clone());
    let first = embedded.0;
    let mut x = tracer.op("add", "positions", &[&embedded], shape.clone());
    tracer.enter("encoder", "TransformerEncoder");
    for layer in 0..layers {
        let path = format!("encoder.layers.{layer}");
        tracer.enter(&path, "TransformerEncoderLayer");
        let attention = tracer.module(&format!("{path}.self_attn"), "MultiheadAttention", "4 heads, 64", &[&x, &x, &x], shape.clone());
        let attention = tracer.module(&format!("{path}.dropout1"), "Dropout", "p=0.1", &[&attention], shape.clone());
        let sum = tracer.op("add", "", &[&x, &attention], shape.clone());
        let normed = tracer.module(&format!("{path}.norm1"), "LayerNorm", "64", &[&sum], shape.clone());
        let hidden = tracer.module(&format!("{path}.linear1"), "Linear", "64→256", &[&normed], vec![1, 16, 256]);
        let hidden = tracer.module(&format!("{path}.activation"), "ReLU", "", &[&hidden], vec![1, 16, 256]);
        let hidden = tracer.module(&format!("{path}.dropout"), "Dropout", "p=0.1", &[&hidden], vec![1, 16, 256]);
        let hidden = tracer.module(&format!("{path}.linear2"), "Linear", "256→64", &[&hidden], shape.clone());
        let hidden = tracer.module(&format!("{path}.dropout2"), "Dropout", "p=0.1", &[&hidden], shape.clone());
        let sum = tracer.op("add", "", &[&normed, &hidden], shape.clone());
        x = tracer.module(&format!("{path}.norm2"), "LayerNorm", "64", &[&sum], shape.clone());
        tracer.leave();
    }
    tracer.leave();
    let pooled = tracer.op("mean", "dim 1", &[&x], vec![1, 64]);
    let out = tracer.module("head", "Linear", "64→2", &[&pooled], vec![1, 2]);
    ModelGraph {
        title: format!("transformer encoder ({layers} layers)"),
        nodes: tracer.nodes,
        edges: tracer.edges,
        inputs: vec![("tokens".to_string(), vec![1, 16], vec![first])],
        outputs: vec![("logits".to_string(), vec![1, 2], out.0)],
    }
}

fn options(depth: Option<u32>, collapse_repeats: bool) -> GraphOptions {
    GraphOptions { depth, collapse_repeats, ..GraphOptions::default() }
}

fn svg(graph: &ModelGraph, options: &GraphOptions) -> (String, String) {
    let figure = graph_figure(graph, options, Format::Svg).unwrap();
    assert_eq!(figure.mime, "image/svg+xml");
    let text = String::from_utf8(figure.data).unwrap();
    assert!(text.starts_with("<svg") && text.ends_with("</svg>"));
    (text, figure.alt_text)
}

/// The contents of every `<text>` element, unescaped.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text ")
        .skip(1)
        .map(|rest| {
            let body = &rest[rest.find('>').unwrap() + 1..rest.find("</text>").unwrap()];
            body.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
        })
        .collect()
}

fn count(texts: &[String], wanted: &str) -> usize {
    texts.iter().filter(|text| *text == wanted).count()
}

#[test]
fn full_depth_shows_every_op_with_its_label() {
    let graph = resnet(2);
    let (svg, alt) = svg(&graph, &options(None, false));
    let texts = texts(&svg);
    // Every op is a box (plus the input and the output), every edge an arrow.
    let boxes = graph.nodes.len() + 2;
    let edges = graph.edges.len() + 2;
    assert_eq!(alt, format!("graph of resnet-like (2 stages): {boxes} boxes (1 input, 1 output), {edges} edges, full depth, repeats not collapsed"));
    for (label, expected) in [
        ("Conv2d", 1 + 4 * 2 + 1),
        ("BatchNorm2d", 1 + 4 * 2 + 1),
        ("ReLU", 1 + 4 * 2),
        ("add", 4),
        ("flatten", 1),
        ("Linear", 1),
        ("x", 1),
        ("logits", 1),
    ] {
        assert_eq!(count(&texts, label), expected, "{label} boxes in {texts:?}");
    }
    // Frames name the module calls holding more than one box, nested; leaf modules are
    // named inside their box, relative to the frame around them.
    for label in ["layer1: Sequential", "layer1.0: BasicBlock", "layer2.0.downsample: Sequential"] {
        assert_eq!(count(&texts, label), 1, "frame {label} in {texts:?}");
    }
    assert!(texts.iter().any(|text| text == "conv1 · 3×3, 64→128, stride 2"), "{texts:?}");
    assert!(texts.iter().any(|text| text == "conv1 · 7×7, 3→64, stride 2"), "{texts:?}");
    assert_eq!(count(&texts, "0 · 1×1, 64→128, stride 2"), 1, "{texts:?}");
}

#[test]
fn depth_folds_module_calls_into_boxes() {
    let graph = resnet(2);
    // Depth, boxes, edges, texts that must be there, texts that must not.
    type Case = (Option<u32>, usize, usize, &'static [&'static str], &'static [&'static str]);
    let cases: &[Case] = &[
        // Depth 1: one box per stage; the skip into layer1.0's add and the path into its
        // conv1 merge into one arrow from the maxpool; stem and head ops stay as they are.
        (
            Some(1),
            11,
            10,
            &["Sequential", "layer1", "layer2", "Conv2d", "flatten", "1×64×56×56", "1×128×28×28"],
            &["BasicBlock", "layer1: Sequential", "add"],
        ),
        // Depth 2: a box per block inside the stage frames.
        (Some(2), 13, 12, &["layer1: Sequential", "layer2: Sequential", "BasicBlock", "layer1.0", "layer2.1"], &["add", "layer1.0: BasicBlock"]),
        // Depth 3: the blocks open; the downsample branch is a box of its own.
        (Some(3), 4 + 7 * 4 + 1 + 3 + 2, 41, &["layer1.0: BasicBlock", "layer2.0.downsample", "add"], &["layer2.0.downsample: Sequential"]),
    ];
    for &(depth, boxes, edges, present, absent) in cases {
        let (svg, alt) = svg(&graph, &options(depth, false));
        let texts = texts(&svg);
        assert!(
            alt.starts_with(&format!("graph of resnet-like (2 stages): {boxes} boxes (1 input, 1 output), {edges} edges, depth {}", depth.unwrap())),
            "{alt}"
        );
        for text in present {
            assert!(texts.iter().any(|t| t == text), "depth {depth:?}: {text:?} missing from {texts:?}");
        }
        for text in absent {
            assert!(!texts.iter().any(|t| t == text), "depth {depth:?}: {text:?} should not be in {texts:?}");
        }
    }
    let (svg, _) = svg(&graph, &options(Some(1), false));
    assert_eq!(count(&texts(&svg), "Sequential"), 2);
}

#[test]
fn identical_consecutive_blocks_collapse_into_one() {
    let plain = resnet(2);
    // layer1.1's second conv reads a tensor of another shape: no longer the same block.
    let mut reshaped = resnet(2);
    let conv2 = reshaped.nodes.iter().find(|node| node.scopes.last().is_some_and(|scope| scope.0 == "layer1.1.conv2")).unwrap().id;
    reshaped.edges.iter_mut().filter(|edge| edge.to == conv2).for_each(|edge| edge.shape = Some(vec![1, 64, 55, 55]));
    // Same shapes, another detail in one op of layer1.1.
    let mut detailed = resnet(2);
    detailed
        .nodes
        .iter_mut()
        .filter(|node| node.scopes.last().is_some_and(|scope| scope.0 == "layer1.1.bn2"))
        .for_each(|node| node.detail = "64, eps 1e-3".to_string());
    // Graph, depth, alt text ending, texts that must be there, texts that must not.
    type Case<'a> = (&'a ModelGraph, Option<u32>, &'a str, &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        // At depth 2 the two blocks of layer1 are one stacked box; layer2's first block
        // downsamples (other shapes, another structure), so layer2 stays two boxes.
        (
            &plain,
            Some(2),
            "1 repeated run collapsed (layer1.0–layer1.1 BasicBlock ×2)",
            &["BasicBlock ×2", "layer1.0–layer1.1", "layer2.0", "layer2.1"],
            &["layer2.0–layer2.1"],
        ),
        // At full depth the run is one frame showing the first block's ops; the two
        // calls of each block's ReLU are told apart by their call index, not merged.
        (
            &plain,
            None,
            "1 repeated run collapsed (layer1.0–layer1.1 BasicBlock ×2)",
            &["layer1.0–layer1.1: BasicBlock ×2", "layer2.0: BasicBlock", "layer2.1: BasicBlock"],
            &["layer1.1: BasicBlock"],
        ),
        // At depth 1 the stages are boxes and there is nothing to compare inside them.
        (&plain, Some(1), "0 repeated runs collapsed", &["layer1", "layer2"], &["BasicBlock ×2"]),
        (&reshaped, Some(2), "0 repeated runs collapsed", &["layer1.0", "layer1.1"], &["BasicBlock ×2"]),
        (&detailed, Some(2), "0 repeated runs collapsed", &["layer1.0", "layer1.1"], &["BasicBlock ×2"]),
    ];
    for (index, &(graph, depth, ending, present, absent)) in cases.iter().enumerate() {
        let (svg, alt) = svg(graph, &options(depth, true));
        let texts = texts(&svg);
        assert!(alt.ends_with(ending), "case {index}: {alt}");
        for text in present {
            assert!(texts.iter().any(|t| t == text), "case {index}: {text:?} missing from {texts:?}");
        }
        for text in absent {
            assert!(!texts.iter().any(|t| t == text), "case {index}: {text:?} should not be in {texts:?}");
        }
    }
    // Collapsing drops the hidden block's boxes and the arrows between the two blocks:
    // depth 2 without repeats has 13 boxes and 12 edges, with them one box and one edge fewer.
    let (_, alt) = svg(&plain, &options(Some(2), true));
    assert!(alt.contains("12 boxes (1 input, 1 output), 11 edges, depth 2"), "{alt}");
    // ResNet-18 (four stages): the second block of each stage matches nothing before it.
    let (_, alt) = svg(&resnet(4), &options(Some(2), true));
    assert!(alt.ends_with("1 repeated run collapsed (layer1.0–layer1.1 BasicBlock ×2)"), "{alt}");
    // Six identical encoder layers fold into one frame at full depth.
    let (svg, alt) = svg(&transformer(6), &options(None, true));
    assert!(alt.ends_with("1 repeated run collapsed (encoder.layers.0–encoder.layers.5 TransformerEncoderLayer ×6)"), "{alt}");
    assert_eq!(count(&texts(&svg), "encoder.layers.0–encoder.layers.5: TransformerEncoderLayer ×6"), 1);
}

#[test]
fn shapes_and_labels_are_svg_text() {
    let graph = resnet(2);
    let (svg, _) = svg(&graph, &options(None, false));
    let texts = texts(&svg);
    // One label per tensor, below the op that makes it: the input, the stem, both stages,
    // the head and the output.
    for shape in ["1×3×224×224", "1×64×112×112", "1×64×56×56", "1×128×28×28", "1×128×1×1", "1×128", "1×10"] {
        assert!(texts.iter().any(|text| text == shape), "{shape} missing from {texts:?}");
    }
    // maxpool's output feeds layer1.0's conv1 and its skip add: one tensor, one label.
    let stem_out = texts.iter().filter(|text| *text == "1×64×56×56").count();
    let producers =
        graph.nodes.iter().filter(|node| graph.edges.iter().any(|edge| edge.from == node.id && edge.shape == Some(vec![1, 64, 56, 56]))).count();
    assert_eq!(stem_out, producers, "one shape label per producing op");
    assert!(svg.contains("<title>graph of resnet-like (2 stages): "));
}

fn png_size(figure: &Figure) -> (u32, u32) {
    assert_eq!(figure.mime, "image/png");
    let decoded = image::load_from_memory(&figure.data).expect("the PNG decodes");
    (decoded.width(), decoded.height())
}

#[test]
fn pngs_decode_with_sane_sizes() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("graph");
    std::fs::create_dir_all(&dir).unwrap();
    // Name, graph, options, width range, height range.
    type Case = (&'static str, ModelGraph, GraphOptions, (u32, u32), (u32, u32));
    let cases: Vec<Case> = vec![
        ("resnet2-depth1", resnet(2), options(Some(1), false), (150, 500), (600, 1200)),
        ("resnet2-depth2", resnet(2), options(Some(2), true), (150, 700), (600, 1400)),
        ("resnet2-full", resnet(2), options(None, false), (300, 1200), (2000, 4500)),
        ("resnet18-depth2", resnet(4), options(Some(2), false), (150, 700), (1000, 2400)),
        ("resnet18-full", resnet(4), options(None, false), (300, 1200), (3500, 8000)),
        ("resnet18-full-repeats", resnet(4), options(None, true), (300, 1200), (3000, 8000)),
        ("transformer-full", transformer(2), options(None, false), (250, 1000), (1200, 3500)),
        ("transformer-repeats", transformer(6), options(None, true), (250, 1000), (800, 2500)),
    ];
    for (name, graph, options, (min_width, max_width), (min_height, max_height)) in cases {
        let figure = graph_figure(&graph, &options, Format::Png).unwrap();
        let (width, height) = png_size(&figure);
        std::fs::write(dir.join(format!("{name}.png")), &figure.data).unwrap();
        assert!((min_width..=max_width).contains(&width) && (min_height..=max_height).contains(&height), "{name}: {width}×{height}");
        let svg = graph_figure(&graph, &options, Format::Svg).unwrap();
        std::fs::write(dir.join(format!("{name}.svg")), &svg.data).unwrap();
        let svg = String::from_utf8(svg.data).unwrap();
        assert!(svg.contains(&format!("width=\"{width}\" height=\"{height}\"")), "{name}: both formats have one size");
        assert_eq!(svg.matches("<image").count(), 0, "no raster parts in the SVG");
    }
}

#[test]
fn bad_graphs_are_refused_with_a_reason() {
    let node = |id: usize| GraphNode { id, label: "op".to_string(), detail: String::new(), scopes: Vec::new() };
    let edge = |from: usize, to: usize| GraphEdge { from, to, shape: None };
    let graph =
        |nodes: Vec<GraphNode>, edges: Vec<GraphEdge>| ModelGraph { title: "bad".to_string(), nodes, edges, inputs: Vec::new(), outputs: Vec::new() };
    let mut unknown_input = graph(vec![node(1)], Vec::new());
    unknown_input.inputs.push(("x".to_string(), vec![1], vec![7]));
    let mut unknown_output = graph(vec![node(1)], Vec::new());
    unknown_output.outputs.push(("y".to_string(), vec![1], 8));
    let cases: Vec<(ModelGraph, GraphOptions, &str)> = vec![
        (graph(Vec::new(), Vec::new()), options(None, false), "the graph has no nodes"),
        (graph(vec![node(1), node(1)], Vec::new()), options(None, false), "node id 1 is used twice (nodes 0 and 1 in the list)"),
        (graph(vec![node(1), node(2)], vec![edge(1, 2), edge(2, 9)]), options(None, false), "edge 1 (2 → 9) names node 9, which is not in the graph"),
        (graph(vec![node(1), node(2), node(3)], vec![edge(1, 2), edge(2, 3), edge(3, 2)]), options(None, false), "the graph has a cycle: "),
        (graph(vec![node(1)], vec![edge(1, 1)]), options(None, false), "the graph has a cycle: 1 → 1"),
        (unknown_input, options(None, false), "input \"x\" feeds node 7, which is not in the graph"),
        (unknown_output, options(None, false), "output \"y\" comes from node 8, which is not in the graph"),
    ];
    for (graph, options, expected) in cases {
        let error = graph_figure(&graph, &options, Format::Svg).unwrap_err();
        let RenderError::BadData(message) = &error else { panic!("{expected}: got {error:?}") };
        assert!(message.starts_with(expected), "{message:?} does not start with {expected:?}");
        assert!(!message.ends_with('.'), "{message:?} ends with a full stop");
    }
    // The cycle is named in order, and closes on its first node.
    let error = graph_figure(&graph(vec![node(1), node(2), node(3)], vec![edge(1, 2), edge(2, 3), edge(3, 2)]), &options(None, false), Format::Png)
        .unwrap_err();
    let message = error.to_string();
    assert!(message.ends_with("2 → 3 → 2") || message.ends_with("3 → 2 → 3"), "{message}");
    let error = graph_figure(&resnet(1), &options(Some(0), false), Format::Png).unwrap_err();
    assert!(matches!(error, RenderError::BadOptions(ref message) if message.contains("at least 1")), "{error:?}");
}

/// A small deterministic generator, so the random cases are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % bound.max(1)
    }
}

/// A block drawn from `seed`: ops reading the block input or earlier ops of the block,
/// sometimes a nested block; the same seed and input give the same structure.
fn random_block(tracer: &mut Tracer, path: &str, seed: u64, input: &Tensor, depth: usize) -> Tensor {
    let mut random = Lcg(seed);
    tracer.enter(path, &format!("Block{}", seed % 3));
    let mut made = vec![input.clone()];
    for step in 0..2 + random.below(4) {
        let out = if depth < 3 && random.below(4) == 0 {
            let from = made[random.below(made.len())].clone();
            random_block(tracer, &format!("{path}.{step}"), seed * 31 + step as u64, &from, depth + 1)
        } else {
            let first = made[random.below(made.len())].clone();
            let second = made[random.below(made.len())].clone();
            let shape = vec![1, 8 << random.below(3)];
            if random.below(2) == 0 {
                tracer.module(&format!("{path}.m{step}"), "Linear", "8→8", &[&first], shape)
            } else {
                tracer.op(["add", "cat", "mul"][random.below(3)], "", &[&first, &second], shape)
            }
        };
        made.push(out);
    }
    tracer.leave();
    made.pop().unwrap()
}

#[test]
fn random_models_render_at_every_depth() {
    let mut random = Lcg(11);
    for case in 0..60 {
        let mut tracer = Tracer::new();
        let x: Tensor = (usize::MAX, vec![1, 8]);
        let mut out = tracer.op("stem", "", &[&x], vec![1, 8]);
        let first = out.0;
        let mut earlier = vec![out.clone()];
        for stage in 0..1 + random.below(4) {
            // Runs of identical blocks (same seed, same input shape) and odd ones out.
            let seed = random.below(1000) as u64;
            for repeat in 0..1 + random.below(3) {
                let block_seed = if random.below(4) == 0 { seed + 1 } else { seed };
                let input = if random.below(5) == 0 { earlier[random.below(earlier.len())].clone() } else { out.clone() };
                out = random_block(&mut tracer, &format!("stage{stage}.{repeat}"), block_seed, &input, 1);
                earlier.push(out.clone());
            }
        }
        let graph = ModelGraph {
            title: format!("random {case}"),
            nodes: tracer.nodes,
            edges: tracer.edges,
            inputs: vec![("x".to_string(), vec![1, 8], vec![first])],
            outputs: vec![("y".to_string(), out.1.clone(), out.0)],
        };
        for depth in [None, Some(1), Some(2), Some(3)] {
            for collapse_repeats in [false, true] {
                let options = options(depth, collapse_repeats);
                let figure = graph_figure(&graph, &options, Format::Svg).unwrap_or_else(|error| panic!("case {case} {options:?}: {error}"));
                let boxes: usize = figure.alt_text.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
                assert!(boxes >= 3 && boxes <= graph.nodes.len() + 2, "case {case} {options:?}: {}", figure.alt_text);
                if depth.is_none() && !collapse_repeats {
                    assert_eq!(boxes, graph.nodes.len() + 2, "case {case}: every op is drawn");
                }
            }
        }
    }
}

/// A viewer's frames open one at a time: every call not held open is one box, a run of
/// identical blocks is one `×N` box until its parent is unfolded, and the laid-out boxes,
/// frames and arrows agree with what the figure draws for the same options.
#[test]
fn an_interactive_view_opens_frames_one_at_a_time() {
    let graph = resnet(4);
    let view = |open: &[&str], unfold: &[&str]| GraphOptions {
        collapse_repeats: true,
        open: Some(open.iter().map(|path| path.to_string()).collect()),
        unfold_repeats: unfold.iter().map(|path| path.to_string()).collect(),
        ..GraphOptions::default()
    };
    // Nothing open: the stem's leaf modules, four folded stages, avgpool, flatten, fc,
    // the input and the output.
    let closed = graph_layout(&graph, &view(&[], &[])).expect("layout");
    let folded: Vec<&str> = closed.boxes.iter().filter(|laid| laid.role == BoxRole::Folded).map(|laid| laid.path.as_str()).collect();
    assert_eq!(folded, ["layer1", "layer2", "layer3", "layer4"]);
    assert_eq!(closed.boxes.len(), 4 + 4 + 3 + 2, "{:?}", closed.alt_text);
    assert!(closed.frames.is_empty());
    let conv1 = closed.boxes.iter().find(|laid| laid.path == "conv1").expect("conv1");
    assert_eq!((conv1.role, conv1.title.as_str(), conv1.node_ids.len()), (BoxRole::Module, "Conv2d", 1));
    let layer1 = closed.boxes.iter().find(|laid| laid.path == "layer1").expect("layer1");
    assert_eq!(layer1.node_ids.len(), 2 * 7, "two blocks of conv, bn, relu, conv, bn, add, relu");
    // layer1 open: a frame holding its two blocks, folded into one box ×2.
    let open = graph_layout(&graph, &view(&["layer1"], &[])).expect("layout");
    assert_eq!(open.frames.iter().map(|frame| frame.path.as_str()).collect::<Vec<_>>(), ["layer1"]);
    let run = open.boxes.iter().find(|laid| laid.path == "layer1.0").expect("the run's box");
    assert_eq!((run.role, run.repeats), (BoxRole::Folded, 2));
    assert!(!open.boxes.iter().any(|laid| laid.path == "layer1.1"));
    assert_eq!(open.boxes.len(), closed.boxes.len());
    let frame = &open.frames[0];
    let inside = |laid: &&layerlens_render::LaidOutBox| {
        laid.x >= frame.x && laid.y >= frame.y && laid.x + laid.width <= frame.x + frame.width && laid.y + laid.height <= frame.y + frame.height
    };
    assert!(inside(&run));
    assert!(!open.boxes.iter().filter(|laid| laid.path == "conv1" || laid.path == "fc").any(|laid| inside(&laid)));
    // Unfolded: both blocks; then layer1.0 open too, with its ops inside a nested frame.
    let unfolded = graph_layout(&graph, &view(&["layer1"], &["layer1"])).expect("layout");
    assert_eq!(unfolded.boxes.len(), open.boxes.len() + 1);
    assert!(unfolded.boxes.iter().all(|laid| laid.repeats == 1));
    let deeper = graph_layout(&graph, &view(&["layer1", "layer1.0"], &["layer1"])).expect("layout");
    assert_eq!(deeper.frames.iter().map(|frame| (frame.path.as_str(), frame.depth)).collect::<Vec<_>>(), [("layer1", 1), ("layer1.0", 2)]);
    assert_eq!(deeper.boxes.len(), unfolded.boxes.len() - 1 + 7, "layer1.0's box becomes its seven ops (ReLU is called twice: a box each)");
    // Every arrow runs from the bottom of its source box to the top of its target.
    for arrow in &deeper.edges {
        let (from, to) = (&deeper.boxes[arrow.from], &deeper.boxes[arrow.to]);
        let (first, last) = (arrow.points[0], *arrow.points.last().expect("points"));
        assert!((first.1 - (from.y + from.height)).abs() < 0.5 && (last.1 - to.y).abs() < 0.5, "{arrow:?}");
        assert!(first.0 >= from.x && first.0 <= from.x + from.width && last.0 >= to.x && last.0 <= to.x + to.width, "{arrow:?}");
    }
    // The figure for the same options draws the same boxes.
    let figure = graph_figure(&graph, &view(&["layer1", "layer1.0"], &["layer1"]), Format::Svg).expect("figure");
    assert_eq!(figure.alt_text, deeper.alt_text);
    assert!(figure.alt_text.starts_with(&format!("graph of resnet-like (4 stages): {} boxes", deeper.boxes.len())), "{}", figure.alt_text);
    // Both from one layout: the same figure and the same data.
    let (both_figure, both_layout) = graph_figure_and_layout(&graph, &view(&["layer1", "layer1.0"], &["layer1"]), Format::Svg).expect("both");
    assert_eq!((both_figure.data, both_layout), (figure.data, deeper));
}
