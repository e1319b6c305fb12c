// layerlens explorer: one page over the daemon's own RPCs through gRPC-Web.
// Messages are read from the daemon's .proto files with protobuf.js; calls use the
// token from the login form (kept for this browser tab only).
"use strict";

const PROTO_FILES = ["common", "models", "explain", "daemon", "generate", "training", "text"];
const state = {
  token: sessionStorage.getItem("layerlens-token") || "",
  models: [],
  methods: [],
  input: null,          // {shape, values: Float32Array, name, model}
  graph: null,          // {model, nodes, edges, summary, parameters}
  expanded: new Set(),
  unfolded: new Set(),  // module frames whose repeated children are shown one by one
  running: [],          // AbortControllers of explanations in flight
  history: [],          // [queued, running] per second
};
let root = null;

// --- gRPC-Web ------------------------------------------------------------------------

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const CODE_NAMES = { 1: "CANCELLED", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 13: "INTERNAL", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED" };

async function loadProtos() {
  root = new protobuf.Root();
  for (const name of PROTO_FILES) {
    const response = await fetch(`/proto/${name}.proto`);
    protobuf.parse(await response.text(), root, { keepCase: true });
  }
  root.resolveAll();
}

function method(service, name) {
  const definition = root.lookupService(`layerlens.v1.${service}`).methods[name];
  return { path: `/layerlens.v1.${service}/${name}`, request: definition.resolvedRequestType, response: definition.resolvedResponseType };
}

function frame(bytes) {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function trailerMap(bytes) {
  const fields = {};
  for (const line of new TextDecoder().decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return fields;
}

function checkStatus(status, message) {
  if (status !== undefined && status !== null && status !== "0") {
    throw new RpcError(Number(status), decodeURIComponent(message || ""));
  }
}

// One call: unary or server streaming (`onMessage` sees each message); `messages`
// sends several request messages in one body (a client stream such as Upload).
async function call(service, name, message, options = {}) {
  const rpc = method(service, name);
  const messages = options.messages || [message];
  const body = concat(messages.map((one) => frame(rpc.request.encode(rpc.request.fromObject(one)).finish())));
  const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", accept: "application/grpc-web+proto" };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  const response = await fetch(rpc.path, { method: "POST", headers, body, signal: options.signal });
  if (!response.ok) throw new RpcError(-1, `HTTP ${response.status} from ${rpc.path}`);
  checkStatus(response.headers.get("grpc-status"), response.headers.get("grpc-message"));
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer = concat([buffer, value]);
    while (buffer.length >= 5) {
      const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
      if (buffer.length < 5 + length) break;
      const flag = buffer[0];
      const payload = buffer.slice(5, 5 + length);
      buffer = buffer.slice(5 + length);
      if (flag & 0x80) {
        const trailers = trailerMap(payload);
        checkStatus(trailers["grpc-status"], trailers["grpc-message"]);
      } else {
        last = rpc.response.toObject(rpc.response.decode(payload), { longs: Number, enums: String, defaults: true, oneofs: true });
        if (options.onMessage) options.onMessage(last);
      }
    }
    if (done) break;
  }
  return last;
}

function showError(error) {
  const box = document.getElementById("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const code = CODE_NAMES[error.code] || (error.code !== undefined ? `code ${error.code}` : "");
  box.textContent = code ? `${code}: ${error.message}` : String(error.message || error);
  box.hidden = false;
}

// --- tensors and .npy -----------------------------------------------------------------

function tensorOf(shape, values) {
  return { shape, dtype: "DTYPE_FLOAT32", data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

function valuesOf(tensor) {
  const bytes = tensor.data;
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  if (tensor.dtype === "DTYPE_FLOAT64") return Float32Array.from(new Float64Array(copy.buffer));
  return new Float32Array(copy.buffer);
}

function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(".npy in Fortran order is not supported; save it C-contiguous");
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map((dim) => dim.trim()).filter(Boolean).map(Number);
  const data = buffer.slice(start + headerLength);
  let values;
  if (descr === "<f4") values = new Float32Array(data);
  else if (descr === "<f8") values = Float32Array.from(new Float64Array(data));
  else if (descr === "|u1") values = Float32Array.from(new Uint8Array(data));
  else throw new Error(`.npy of ${descr} is not supported; save float32`);
  return { shape, values };
}

function npyBytes(shape, values) {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 78, 85, 77, 80, 89, 1, 0]);
  new DataView(head.buffer).setUint16(8, header.length, true);
  head.set(new TextEncoder().encode(header), 10);
  return concat([head, new Uint8Array(values.buffer, values.byteOffset, values.byteLength)]);
}

async function imageInput(file, shape) {
  const [, channels, height, width] = shape;
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height).data;
  const values = new Float32Array(channels * height * width);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const at = (y * width + x) * 4;
      for (let c = 0; c < channels; c++) {
        const value = channels === 1 ? (pixels[at] + pixels[at + 1] + pixels[at + 2]) / 3 : pixels[at + c];
        values[c * height * width + y * width + x] = value / 255;
      }
    }
  }
  return { shape: [1, channels, height, width], values };
}

// --- small helpers -------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svgElement(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function bytesText(bytes) {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function modelLabel(model) {
  return model.names.length ? model.names[0] : model.id.slice(0, 12);
}

function fillModelSelects() {
  for (const id of ["graph-model", "explain-model", "generate-model"]) {
    const select = document.getElementById(id);
    const chosen = select.value;
    select.replaceChildren(...state.models.map((model) => element("option", { value: model.id, text: modelLabel(model) })));
    if (chosen) select.value = chosen;
  }
}

// --- views ---------------------------------------------------------------------------

function showView(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
  }
}

async function refreshModels() {
  const answer = await call("Models", "List", {});
  state.models = answer.models;
  const body = document.querySelector("#models-table tbody");
  body.replaceChildren(
    ...state.models.map((model) =>
      element(
        "tr",
        { "data-model": model.id },
        element("td", { text: model.names.join(", ") || "–" }),
        element("td", { text: model.id.slice(0, 12), title: model.id }),
        element("td", { text: model.format }),
        element("td", { text: bytesText(model.size_bytes) }),
        element("td", { text: model.input_shape.length ? model.input_shape.join("×") : "–" }),
        element("td", { text: model.resident ? "yes" : "no" }),
        element("td", { text: model.pinned ? "pinned" : "" }),
      ),
    ),
  );
  fillModelSelects();
}

async function uploadModel(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const chunk = 1 << 20;
  const messages = [{ header: { name: file.name.replace(/\.(pt2?|pth)$/, "") } }];
  for (let offset = 0; offset < bytes.length; offset += chunk) messages.push({ chunk: bytes.slice(offset, offset + chunk) });
  await call("Models", "Upload", null, { messages });
  await refreshModels();
}

// Team status: the Status RPC every second, with a minute of history.
async function refreshStatus() {
  const status = await call("Daemon", "Status", {});
  const queued = status.models.reduce((sum, model) => sum + model.queued, 0);
  const running = status.models.reduce((sum, model) => sum + model.in_flight, 0);
  state.history.push([queued, running]);
  if (state.history.length > 60) state.history.shift();
  const cache = status.cache || {};
  const memory = status.memory || {};
  const cards = [
    ["device", status.device],
    ["uptime", `${Math.round(status.uptime_seconds)} s`],
    ["resident models", String(status.models.length)],
    ["resident bytes", bytesText(status.resident_bytes)],
    ["queued", String(queued)],
    ["running", String(running)],
    ["memory budget", memory.budget_bytes ? `${bytesText(memory.used_bytes)} of ${bytesText(memory.budget_bytes)}` : "none"],
    ["cache", `${cache.entries || 0} entries, ${bytesText(cache.size_bytes || 0)}; ${cache.hits || 0} hits, ${cache.misses || 0} misses`],
  ];
  document.getElementById("status-cards").replaceChildren(
    ...cards.map(([name, value]) => element("div", { class: "card", "data-field": name }, element("span", { text: name }), element("strong", { text: value }))),
  );
  const chart = document.getElementById("status-chart");
  const top = Math.max(1, ...state.history.flat());
  const line = (index, colour) =>
    svgElement("polyline", {
      points: state.history.map((sample, at) => `${(at / 59) * 590 + 5},${115 - (sample[index] / top) * 105}`).join(" "),
      fill: "none",
      stroke: colour,
      "stroke-width": "2",
    });
  chart.replaceChildren(line(0, "#c0392b"), line(1, "#2c7fb8"), Object.assign(svgElement("text", { x: 8, y: 14 }), { textContent: `queued (red), running (blue); max ${top}` }));
  document.querySelector("#status-models tbody").replaceChildren(
    ...status.models.map((model) =>
      element(
        "tr",
        {},
        element("td", { text: model.names[0] || model.id.slice(0, 12) }),
        element("td", { text: model.kind }),
        element("td", { text: bytesText(model.resident_bytes) }),
        element("td", { text: String(model.in_flight) }),
        element("td", { text: String(model.queued) }),
        element("td", { text: model.pinned ? "pinned" : "" }),
        element("td", { text: model.idle_seconds.toFixed(0) }),
      ),
    ),
  );
}

// --- explain playground ---------------------------------------------------------------

async function loadMethods() {
  const answer = await call("Explain", "Methods", {});
  state.methods = answer.methods;
  const box = document.getElementById("explain-methods");
  box.replaceChildren(
    element("legend", { text: "Methods" }),
    ...state.methods.map((entry) => {
      const input = element("input", { type: "checkbox", value: entry.name, id: `method-${entry.name}` });
      if (entry.name === "saliency") input.checked = true;
      return element("label", { title: entry.summary, for: `method-${entry.name}` }, input, ` ${entry.name}${entry.layer ? " (layer)" : ""}`);
    }),
  );
}

async function readInput(file) {
  const model = state.models.find((entry) => entry.id === document.getElementById("explain-model").value);
  if (file.name.endsWith(".npy")) return { ...parseNpy(await file.arrayBuffer()), name: file.name };
  if (!model || model.input_shape.length !== 4) throw new Error("an image needs a model with a stored input shape (batch, channels, height, width)");
  return { ...(await imageInput(file, model.input_shape)), name: file.name };
}

function explain() {
  const model = document.getElementById("explain-model").value;
  const methods = [...document.querySelectorAll("#explain-methods input:checked")].map((input) => input.value);
  if (!state.input) return showError(new Error("choose an input (.npy or image) first"));
  if (!methods.length) return showError(new Error("choose at least one method"));
  showError(null);
  const targetText = document.getElementById("explain-target").value.trim();
  const layer = document.getElementById("explain-layer").value.trim();
  const params = {};
  for (const pair of document.getElementById("explain-params").value.trim().split(/\s+/).filter(Boolean)) {
    const equals = pair.indexOf("=");
    if (equals <= 0) return showError(new Error(`option ${pair}: expected KEY=VALUE`));
    params[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  const results = document.getElementById("explain-results");
  results.replaceChildren();
  const cancel = document.getElementById("explain-cancel");
  cancel.disabled = false;
  const runs = methods.map(async (name) => {
    const controller = new AbortController();
    state.running.push(controller);
    const progress = element("progress", { max: "1", value: "0", "aria-label": `${name} progress` });
    const note = element("span", { class: "hint", text: "queued" });
    const card = element("div", { class: "result", "data-method": name }, element("h3", { text: name }), progress, note);
    results.append(card);
    const request = { model, input: tensorOf(state.input.shape, state.input.values), method: name, figure_format: "FIGURE_FORMAT_PNG", layer, params };
    if (targetText !== "") request.target = Number(targetText);
    try {
      const started = performance.now();
      let answer = null;
      await call("Explain", "AttributeStream", request, {
        signal: controller.signal,
        onMessage: (event) => {
          if (event.progress) {
            const done = event.progress.rows_done;
            const total = Math.max(1, event.progress.rows_total);
            progress.value = done / total;
            note.textContent = `${event.progress.phase}: ${done} of ${event.progress.rows_total} rows`;
          }
          if (event.result) answer = event.result;
        },
      });
      progress.value = 1;
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      note.textContent = `${answer.rows_evaluated} rows in ${answer.passes} passes, ${seconds} s; target ${answer.targets.join(", ")}`;
      if (answer.figure && answer.figure.data.length) {
        const url = URL.createObjectURL(new Blob([answer.figure.data], { type: answer.figure.mime }));
        card.append(element("img", { src: url, alt: answer.figure.alt_text || `${name} attribution` }));
      }
      const values = valuesOf(answer.attribution);
      const download = element("a", { download: `${name}.npy`, class: "download", text: `download ${name}.npy` });
      download.href = URL.createObjectURL(new Blob([npyBytes(answer.attribution.shape, values)], { type: "application/octet-stream" }));
      card.append(download);
      card.dataset.done = "true";
    } catch (error) {
      note.textContent = controller.signal.aborted ? "cancelled" : `failed: ${error.message}`;
      card.dataset.done = controller.signal.aborted ? "cancelled" : "failed";
      if (!controller.signal.aborted) showError(error);
    }
  });
  Promise.allSettled(runs).then(() => {
    state.running = [];
    cancel.disabled = true;
  });
}

// --- graph explorer -------------------------------------------------------------------

const view = { x: 0, y: 0, width: 800, height: 600 };

async function loadGraph() {
  const model = document.getElementById("graph-model").value;
  const shapeText = document.getElementById("graph-shape").value.trim();
  const request = { model, figure_format: "FIGURE_FORMAT_NONE" };
  if (shapeText) request.input_shape = shapeText.split(/[x×,\s]+/).map(Number);
  const [graph, summary, parameters] = await Promise.all([
    call("Explain", "Graph", request),
    call("Explain", "Summary", { model, input_shape: request.input_shape || [], figure_format: "FIGURE_FORMAT_NONE" }),
    call("Explain", "Parameters", { model, figure_format: "FIGURE_FORMAT_NONE" }),
  ]);
  state.graph = { model, inputShape: request.input_shape, nodes: graph.nodes, byId: new Map(graph.nodes.map((node) => [node.id, node])), edges: graph.edges, summary, parameters };
  state.expanded = new Set();
  state.unfolded = new Set();
  await renderGraph(true);
}

function parentOf(path) {
  return path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
}

function ancestors(path) {
  const parts = path.split(".");
  return parts.map((_, index) => parts.slice(0, index + 1).join("."));
}

// The daemon lays the graph out (the same Sugiyama layout as its figures) for the frames
// open here: every module call not in `state.expanded` is one box, and runs of identical
// blocks fold into one box marked ×N except inside the calls in `state.unfolded`. The page
// only draws what comes back; each open or close is one Graph call (answered from the
// daemon's cache when the view was seen before).
async function renderGraph(fit) {
  const graph = state.graph;
  if (!graph) return;
  const request = {
    model: graph.model,
    figure_format: "FIGURE_FORMAT_NONE",
    collapse_repeats: true,
    view: { open: [...state.expanded], unfold_repeats: [...state.unfolded] },
  };
  if (graph.inputShape) request.input_shape = graph.inputShape;
  const asked = (state.layoutAsked = (state.layoutAsked || 0) + 1);
  const answer = await call("Explain", "Graph", request);
  if (asked !== state.layoutAsked) return; // a later click asked for another view
  const layout = answer.layout;
  const svg = document.getElementById("graph-svg");
  const frames = svgElement("g", { class: "frames" });
  const edges = svgElement("g", { class: "edges" });
  const nodes = svgElement("g", { class: "nodes" });
  const labels = svgElement("g", { class: "shapes" });
  for (const frame of layout.frames) {
    const group = svgElement("g", { class: "frame", "data-path": frame.path, "data-depth": String(frame.depth), tabindex: "0", role: "button", "aria-label": `collapse ${frame.path}` });
    group.append(svgElement("rect", { x: frame.x, y: frame.y, width: frame.width, height: frame.height, rx: 7 }));
    const label = svgElement("text", { x: frame.x + frame.label_x, y: frame.y + 16 });
    label.textContent = `▾ ${frame.label}`;
    group.append(label);
    const close = () => {
      state.expanded.delete(frame.path);
      state.unfolded.delete(frame.path);
      for (const other of [...state.expanded]) if (other.startsWith(`${frame.path}.`)) state.expanded.delete(other);
      guarded(() => renderGraph(false))();
    };
    group.addEventListener("click", (event) => {
      event.stopPropagation();
      close();
    });
    group.addEventListener("keydown", (event) => {
      if ((event.key === "Enter" || event.key === " ") && event.target === group) close();
    });
    frames.append(group);
  }
  // Arrows as the daemon routed them, with the shapes they carry: one label under a box
  // whose arrows all carry one shape, else one by each arrow's end.
  const leaving = new Map();
  for (const arrow of layout.arrows) {
    const points = [];
    for (let index = 0; index + 1 < arrow.points.length; index += 2) points.push(`${arrow.points[index]},${arrow.points[index + 1]}`);
    edges.append(svgElement("polyline", { points: points.join(" "), "marker-end": "url(#arrow-head)" }));
    if (!leaving.has(arrow.from)) leaving.set(arrow.from, []);
    leaving.get(arrow.from).push(arrow);
  }
  const shapeText = (shape) => (shape.length ? shape.join("×") : "scalar");
  for (const arrows of leaving.values()) {
    const shapes = new Set(arrows.map((arrow) => arrow.shape.join("×")));
    const at = shapes.size === 1 ? [arrows[0]] : arrows;
    for (const arrow of at) {
      if (!arrow.shape.length && shapes.size === 1) continue;
      const n = arrow.points.length;
      const [x, y] = shapes.size === 1 ? [arrow.points[0] + 5, arrow.points[1] + 11] : [arrow.points[n - 2] + 5, arrow.points[n - 1] - 5];
      const text = svgElement("text", { x, y });
      text.textContent = shapeText(arrow.shape);
      labels.append(text);
    }
  }
  const outgoing = (index) => (leaving.get(index) || []).map((arrow) => arrow.shape);
  layout.boxes.forEach((laid, index) => {
    const folded = laid.role === "folded";
    const isRepeat = laid.repeats > 1;
    const classes = { folded: "node module", module: "node op leaf", op: "node op", input: "node terminal", output: "node terminal" }[laid.role] || "node";
    const group = svgElement("g", {
      class: isRepeat ? `${classes} repeat` : classes,
      "data-path": laid.path,
      "data-role": laid.role,
      tabindex: "0",
      role: "button",
      "aria-label": isRepeat ? `show the ${laid.repeats} repeated ${laid.path} blocks` : folded ? `expand ${laid.path}` : `${laid.title} in ${laid.path || "the model"}`,
    });
    if (isRepeat) group.dataset.repeats = String(laid.repeats);
    group.append(svgElement("rect", { x: laid.x, y: laid.y, width: laid.width, height: laid.height, rx: folded ? 8 : 4 }));
    if (isRepeat) group.prepend(svgElement("rect", { class: "stack", x: laid.x + 4, y: laid.y + 4, width: laid.width, height: laid.height, rx: 8 }));
    const title = svgElement("text", { x: laid.x + laid.width / 2, y: laid.y + laid.height / 2 - 6.5 * laid.lines.length + 4, "text-anchor": "middle" });
    title.textContent = laid.title;
    group.append(title);
    laid.lines.forEach((line, number) => {
      const text = svgElement("text", { class: "detail", x: laid.x + laid.width / 2, y: laid.y + laid.height / 2 - 6.5 * laid.lines.length + 4 + 13 * (number + 1), "text-anchor": "middle" });
      text.textContent = line;
      group.append(text);
    });
    if (laid.role === "input" || laid.role === "output") {
      nodes.append(group);
      return;
    }
    const box = { nodes: laid.node_ids.map((id) => graph.byId.get(id)).filter(Boolean), shapes: outgoing(index) };
    const isModule = folded || laid.role === "module";
    const activate = () => {
      if (isRepeat) {
        state.unfolded.add(parentOf(laid.path));
        guarded(() => renderGraph(false))();
      } else if (folded) {
        state.expanded.add(laid.path);
        guarded(() => renderGraph(false))();
      }
      showCard(box, laid.path, isModule, laid.repeats);
    };
    group.addEventListener("click", (event) => {
      event.stopPropagation();
      activate();
    });
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") activate();
    });
    nodes.append(group);
  });
  const defs = svgElement("defs");
  const marker = svgElement("marker", { id: "arrow-head", viewBox: "0 0 8 8", refX: "7", refY: "4", markerWidth: "8", markerHeight: "8", orient: "auto", markerUnits: "userSpaceOnUse" });
  marker.append(svgElement("path", { d: "M0,0 L8,4 L0,8 z" }));
  defs.append(marker);
  svg.replaceChildren(defs, frames, edges, labels, nodes);
  svg.dataset.boxes = String(layout.boxes.length);
  svg.setAttribute("aria-label", layout.alt_text);
  if (fit) {
    // The graph's width in view, and as much of its height as stays readable.
    const aspect = svg.clientHeight / Math.max(1, svg.clientWidth) || 0.6;
    const width = Math.max(600, layout.width + 80);
    const height = layout.height + 80;
    // All of it when that keeps the boxes readable; else the top part at a readable size.
    view.width = Math.max(width, Math.min(height / aspect, width * 2.2));
    view.height = view.width * aspect;
    view.x = -40 - (view.width - width) / 2;
    view.y = -40;
  }
  applyView();
}

function applyView() {
  document.getElementById("graph-svg").setAttribute("viewBox", `${view.x} ${view.y} ${view.width} ${view.height}`);
}

// A parameter's histogram as a small bar chart (the Parameters RPC's bins).
function histogram(name, stats) {
  const counts = stats.histogram_counts;
  const top = Math.max(1, ...counts);
  const width = 300;
  const height = 60;
  const chart = svgElement("svg", { width, height, class: "histogram", role: "img", "aria-label": `histogram of ${name}`, "data-parameter": name });
  const bar = width / counts.length;
  counts.forEach((count, index) => {
    chart.append(svgElement("rect", { x: index * bar, y: height - 14 - (count / top) * (height - 16), width: Math.max(1, bar - 1), height: (count / top) * (height - 16) }));
  });
  const edges = stats.histogram_edges;
  for (const [x, value, anchor] of [[0, edges[0], "start"], [width, edges[edges.length - 1], "end"]]) {
    const label = svgElement("text", { x, y: height - 2, "text-anchor": anchor });
    label.textContent = Number(value).toPrecision(3);
    chart.append(label);
  }
  return chart;
}

function moduleParameters(path) {
  return state.graph.parameters.parameters.filter((parameter) => parameter.name.startsWith(`${path}.`) && !parameter.name.slice(path.length + 1).includes("."));
}

async function showCard(box, path, isModule, repeats = 1) {
  const card = document.getElementById("node-card");
  const row = state.graph.summary.rows.find((entry) => entry.path === path);
  const lines = [element("h3", { text: isModule ? path : box.nodes[0].op })];
  if (repeats > 1) lines.push(element("div", { class: "hint", text: `the first of ${repeats} repeated blocks of this type; they are now shown one by one` }));
  const add = (name, value) => lines.push(element("div", {}, element("span", { text: `${name}: ` }), element("strong", { text: value })));
  if (!isModule) {
    add("module", path || "(the model)");
    if (box.nodes[0].source) add("source", box.nodes[0].source);
  }
  if (row) {
    add("type", row.type_name);
    add("parameters", row.num_params.toLocaleString());
    if (row.output_shapes.length) add("output shape", row.output_shapes.map((shape) => `(${shape.dims.join(", ")})`).join(" "));
    if (row.mult_adds) add("mult-adds", row.mult_adds.toLocaleString());
    if (row.kernel_size && row.kernel_size.length) add("kernel size", row.kernel_size.join("×"));
    if (row.call_site) add("called at", row.call_site);
    for (const [name, value] of Object.entries(row.attributes || {}).sort()) add(name, value);
  }
  if (!isModule && box.shapes.length) add("output shape", `(${box.shapes[0].join(", ")})`);
  for (const parameter of row ? moduleParameters(path) : []) {
    const stats = parameter.stats || {};
    add(parameter.name, `(${parameter.shape.join(", ")}) mean ${Number(stats.mean).toExponential(3)} std ${Number(stats.std).toExponential(3)} min ${Number(stats.min).toExponential(2)} max ${Number(stats.max).toExponential(2)}`);
    if (stats.histogram_counts && stats.histogram_counts.length) lines.push(histogram(parameter.name, stats));
  }
  card.replaceChildren(...lines);
  card.hidden = false;
  card.dataset.path = path;
  // The last activation statistics, when the playground's input is for this model.
  if (state.input && state.input.model === state.graph.model && row) {
    try {
      const report = await call("Explain", "Activations", { model: state.graph.model, input: tensorOf(state.input.shape, state.input.values), figure_format: "FIGURE_FORMAT_NONE" });
      const layer = report.layers.find((entry) => entry.path === path);
      if (layer && card.dataset.path === path) {
        const stats = layer.stats || {};
        card.append(element("div", {}, element("span", { text: "last activation: " }), element("strong", { text: `mean ${Number(stats.mean).toExponential(3)}, std ${Number(stats.std).toExponential(3)}` })));
        for (const anomaly of report.anomalies.filter((entry) => entry.path === path)) {
          card.append(element("div", { class: "anomaly", text: `${anomaly.severity}: ${anomaly.message}` }));
        }
      }
    } catch (error) {
      card.append(element("div", { class: "anomaly", text: `activations: ${error.message}` }));
    }
  }
}

async function findInGraph(text) {
  if (!state.graph || !text) return;
  const match = state.graph.nodes.find((node) => node.module_path === text) || state.graph.nodes.find((node) => node.module_path.includes(text));
  if (!match) return showError(new Error(`no layer matches ${text}`));
  showError(null);
  const target = match.module_path === text ? text : match.module_path;
  for (const path of ancestors(target).slice(0, -1)) {
    state.expanded.add(path);
    state.unfolded.add(parentOf(path));
  }
  state.unfolded.add(parentOf(target));
  await renderGraph(false);
  const box = document.querySelector(`#graph-svg .node[data-path="${CSS.escape(target)}"]`) || document.querySelector(`#graph-svg .node[data-path^="${CSS.escape(target)}"]`);
  if (!box) return;
  box.classList.add("found");
  const rect = box.querySelector("rect:last-of-type");
  view.x = Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")) / 2 - view.width / 2;
  view.y = Number(rect.getAttribute("y")) - view.height / 2;
  applyView();
  box.focus();
}

function setUpPanAndZoom() {
  const svg = document.getElementById("graph-svg");
  let dragging = null;
  let frames = 0;
  let since = 0;
  const tick = () => {
    if (!dragging) return;
    frames += 1;
    requestAnimationFrame(tick);
  };
  svg.addEventListener("pointerdown", (event) => {
    dragging = { x: event.clientX, y: event.clientY, viewX: view.x, viewY: view.y };
    frames = 0;
    since = performance.now();
    requestAnimationFrame(tick);
  });
  window.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const scale = view.width / Math.max(1, svg.clientWidth);
    view.x = dragging.viewX - (event.clientX - dragging.x) * scale;
    view.y = dragging.viewY - (event.clientY - dragging.y) * scale;
    applyView();
  });
  // A drag that moved the view ends in a click on whatever lies under the pointer; that
  // click must not open or close a frame.
  let moved = false;
  svg.addEventListener("click", (event) => {
    if (moved) {
      event.stopPropagation();
      moved = false;
    }
  }, true);
  window.addEventListener("pointerup", (event) => {
    if (!dragging) return;
    moved = Math.abs(event.clientX - dragging.x) + Math.abs(event.clientY - dragging.y) > 4;
    const seconds = (performance.now() - since) / 1000;
    if (seconds > 0.2) {
      const fps = frames / seconds;
      const label = document.getElementById("graph-fps");
      label.textContent = `${fps.toFixed(0)} fps while panning`;
      label.dataset.fps = fps.toFixed(1);
    }
    dragging = null;
  });
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = event.deltaY > 0 ? 1.15 : 1 / 1.15;
    const box = svg.getBoundingClientRect();
    const px = view.x + ((event.clientX - box.left) / box.width) * view.width;
    const py = view.y + ((event.clientY - box.top) / box.height) * view.height;
    view.width *= factor;
    view.height *= factor;
    view.x = px - (px - view.x) * factor;
    view.y = py - (py - view.y) * factor;
    applyView();
  }, { passive: false });
  svg.addEventListener("keydown", (event) => {
    const step = view.width / 10;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[event.key] && event.target === svg) {
      view.x += moves[event.key][0];
      view.y += moves[event.key][1];
      applyView();
      event.preventDefault();
    } else if (event.key === "+" || event.key === "-") {
      const factor = event.key === "+" ? 1 / 1.2 : 1.2;
      view.x += (view.width * (1 - factor)) / 2;
      view.y += (view.height * (1 - factor)) / 2;
      view.width *= factor;
      view.height *= factor;
      applyView();
    }
  });
}

// --- generation -----------------------------------------------------------------------

function figureUrl(figure) {
  return URL.createObjectURL(new Blob([figure.data], { type: figure.mime }));
}

function generate() {
  const model = document.getElementById("generate-model").value;
  const objectives = document.getElementById("generate-objectives").value.split("\n").map((line) => line.trim()).filter(Boolean);
  if (!objectives.length) return showError(new Error("give at least one objective, e.g. channel:features.0:3"));
  showError(null);
  const steps = Number(document.getElementById("generate-steps").value) || 64;
  const every = Number(document.getElementById("generate-every").value) || 0;
  const request = {
    model,
    objectives: objectives.map((term) => ({ terms: [{ term }] })),
    steps,
    seed: Number(document.getElementById("generate-seed").value) || 0,
    image_every: every,
    figure_format: "FIGURE_FORMAT_PNG",
  };
  const controller = new AbortController();
  const cancel = document.getElementById("generate-cancel");
  const progress = document.getElementById("generate-progress");
  const note = document.getElementById("generate-note");
  const sheet = document.getElementById("generate-sheet");
  sheet.replaceChildren();
  sheet.dataset.done = "";
  cancel.disabled = false;
  cancel.onclick = () => controller.abort();
  progress.value = 0;
  const image = element("img", { alt: "the images being optimised" });
  sheet.append(image);
  call("Generate", "Visualize", request, {
    signal: controller.signal,
    onMessage: (event) => {
      if (event.progress) {
        progress.value = event.progress.step / Math.max(1, event.progress.steps);
        note.textContent = `step ${event.progress.step} of ${event.progress.steps}; objective ${event.progress.objective.map((value) => value.toFixed(3)).join(", ")}`;
        if (event.progress.figure && event.progress.figure.data.length) {
          image.src = figureUrl(event.progress.figure);
          sheet.dataset.frames = String(Number(sheet.dataset.frames || 0) + 1);
        }
      }
      if (event.result) {
        progress.value = 1;
        note.textContent = `${event.result.steps} steps; objective ${event.result.objective.map((value) => value.toFixed(3)).join(", ")}; predicted ${event.result.predicted_class.join(", ")}`;
        if (event.result.figure && event.result.figure.data.length) image.src = figureUrl(event.result.figure);
        image.alt = `contact sheet: ${objectives.join(", ")}`;
      }
    },
  })
    .then(() => {
      sheet.dataset.done = "true";
    })
    .catch((error) => {
      sheet.dataset.done = controller.signal.aborted ? "cancelled" : "failed";
      note.textContent = controller.signal.aborted ? "cancelled" : `failed: ${error.message}`;
      if (!controller.signal.aborted) showError(error);
    })
    .finally(() => {
      cancel.disabled = true;
    });
}

// --- training runs --------------------------------------------------------------------

async function refreshRuns() {
  const answer = await call("Training", "ListRuns", {});
  const select = document.getElementById("runs-run");
  const chosen = select.value;
  select.replaceChildren(...answer.runs.map((run) => element("option", { value: run.name, text: `${run.name} (${run.steps} steps)` })));
  if (chosen && answer.runs.some((run) => run.name === chosen)) select.value = chosen;
  document.getElementById("runs-note").textContent = answer.runs.length ? "" : "no runs yet: layerlens.watch(model, optimizer, run=...) reports one";
  await showRun();
}

async function showRun() {
  const run = document.getElementById("runs-run").value;
  if (!run) return;
  const [ratio, flow] = await Promise.all([
    call("Training", "RunFigure", { runs: [run], kind: "RUN_FIGURE_KIND_RATIO_HEATMAP", figure_format: "FIGURE_FORMAT_PNG" }),
    call("Training", "RunFigure", { runs: [run], kind: "RUN_FIGURE_KIND_GRADIENT_FLOW", figure_format: "FIGURE_FORMAT_PNG" }),
  ]);
  for (const [id, figure] of [["runs-ratio", ratio], ["runs-flow", flow]]) {
    const image = document.getElementById(id);
    if (image.src) URL.revokeObjectURL(image.src);
    image.src = figureUrl(figure);
    image.alt = figure.alt_text || image.alt;
  }
  document.getElementById("runs-figures").dataset.run = run;
}

// --- wiring --------------------------------------------------------------------------

function guarded(work) {
  return async (...args) => {
    try {
      await work(...args);
    } catch (error) {
      showError(error);
    }
  };
}

function setUp() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) tab.addEventListener("click", () => showView(tab.id.slice(4)));
  document.querySelector("[role=tablist]").addEventListener("keydown", (event) => {
    const at = tabs.findIndex((tab) => tab.getAttribute("aria-selected") === "true");
    const next = event.key === "ArrowRight" ? (at + 1) % tabs.length : event.key === "ArrowLeft" ? (at + tabs.length - 1) % tabs.length : -1;
    if (next >= 0) {
      showView(tabs[next].id.slice(4));
      tabs[next].focus();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey && /^[1-6]$/.test(event.key)) showView(tabs[Number(event.key) - 1].id.slice(4));
  });
  document.getElementById("token").value = state.token;
  document.getElementById("login").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    state.token = document.getElementById("token").value.trim();
    sessionStorage.setItem("layerlens-token", state.token);
    showError(null);
    await start();
  }));
  const drop = document.getElementById("drop");
  const fileInput = document.getElementById("model-file");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter") fileInput.click();
  });
  fileInput.addEventListener("change", guarded(async () => {
    if (fileInput.files[0]) await uploadModel(fileInput.files[0]);
  }));
  const models = document.getElementById("view-models");
  models.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  models.addEventListener("dragleave", () => drop.classList.remove("over"));
  models.addEventListener("drop", guarded(async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) await uploadModel(event.dataTransfer.files[0]);
  }));
  document.getElementById("graph-load").addEventListener("click", guarded(loadGraph));
  document.getElementById("graph-search").addEventListener("keydown", (event) => {
    if (event.key === "Enter") guarded(() => findInGraph(event.target.value.trim()))();
  });
  document.getElementById("graph-expand-all").addEventListener("click", guarded(async () => {
    if (!state.graph) return;
    for (const node of state.graph.nodes) {
      for (const path of node.module_path ? ancestors(node.module_path) : []) {
        state.expanded.add(path);
        state.unfolded.add(parentOf(path));
      }
    }
    state.unfolded.add("");
    await renderGraph(true);
  }));
  document.getElementById("graph-collapse-all").addEventListener("click", guarded(async () => {
    state.expanded = new Set();
    state.unfolded = new Set();
    await renderGraph(true);
  }));
  setUpPanAndZoom();
  document.getElementById("explain-input").addEventListener("change", guarded(async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    state.input = { ...(await readInput(file)), model: document.getElementById("explain-model").value };
    document.getElementById("explain-input-info").textContent = `${state.input.name}: shape (${state.input.shape.join(", ")})`;
  }));
  document.getElementById("explain-run").addEventListener("click", explain);
  document.getElementById("generate-run").addEventListener("click", generate);
  document.getElementById("runs-refresh").addEventListener("click", guarded(refreshRuns));
  document.getElementById("runs-run").addEventListener("change", guarded(showRun));
  document.getElementById("tab-runs").addEventListener("click", guarded(refreshRuns));
  document.getElementById("explain-cancel").addEventListener("click", () => {
    for (const controller of state.running) controller.abort();
  });
}

let statusTimer = null;
let runsTimer = null;

async function start() {
  await refreshModels();
  await loadMethods();
  await refreshStatus();
  if (statusTimer) clearInterval(statusTimer);
  statusTimer = setInterval(() => refreshStatus().catch(showError), 1000);
  if (runsTimer) clearInterval(runsTimer);
  // A watched run grows: its figures refresh while the Runs view is open.
  runsTimer = setInterval(() => {
    if (!document.getElementById("view-runs").hidden) showRun().catch(showError);
  }, 2000);
  document.body.dataset.ready = "true";
}

window.addEventListener("DOMContentLoaded", async () => {
  setUp();
  try {
    await loadProtos();
    await start();
  } catch (error) {
    showError(error);
  }
});
