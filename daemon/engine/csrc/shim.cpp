// layerlens C++ shim: exposes what tch does not, as data, and leaves all policy to Rust.
//
// Two things today:
// - the module tree of a TorchScript file: every module instance with its dotted path,
//   its qualified TorchScript type name and the parameters it owns directly;
// - "taps": a rewritten forward, `forward_taps`, that returns the model output followed
//   by the output of every module instance, on the autograd path, so Rust can read
//   and differentiate any layer's output (layer attributions, activation sizes).
//
// The tap rewrite (DESIGN.md): copy the forward graph, inline every call, remove
// tensor mutation (so a tap is the value the layer produced, not one changed in place
// later, e.g. ResNet's `out += identity`), then find, for every module instance, the
// last tensor value its nodes produce that is used outside it (the call's output). A
// node's module instance comes from its inlined call stack; `SELF` frames are skipped.
//
// A third method, `forward_observe`, returns only the model output and hands each tap to
// a callback as soon as it is produced (through the `layerlens::observe` op inserted
// after its producer), so statistics of every layer are taken while the forward pass
// runs and each layer's output is freed when the model is done with it, instead of all
// of them being held until the end.
//
// Rules: C++ exceptions never cross the FFI boundary (every entry point catches and
// returns an error string); strings handed to Rust are malloc'd and freed with
// layerlens_free_string.

#include <torch/script.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/jit/passes/constant_pooling.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/peephole.h>
#include <torch/csrc/jit/passes/lower_tuples.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "text.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

namespace {

using layerlens_text::copy_to_c_string;
using layerlens_text::write_json_string;

// Writes a simple IValue as JSON: numbers, bools, strings, None, and tuples or lists
// of those. Answers false (writing nothing) for anything else.
bool write_json_ivalue(std::ostringstream& out, const c10::IValue& value) {
    if (value.isInt()) { out << value.toInt(); return true; }
    if (value.isDouble()) {
        const double number = value.toDouble();
        if (!std::isfinite(number)) { out << "null"; return true; }
        out << number;
        return true;
    }
    if (value.isBool()) { out << (value.toBool() ? "true" : "false"); return true; }
    if (value.isString()) { write_json_string(out, value.toStringRef()); return true; }
    if (value.isNone()) { out << "null"; return true; }
    std::vector<c10::IValue> items;
    if (value.isTuple()) {
        for (const auto& item : value.toTupleRef().elements()) items.push_back(item);
    } else if (value.isIntList()) {
        for (int64_t item : value.toIntVector()) items.emplace_back(item);
    } else if (value.isDoubleList()) {
        for (double item : value.toDoubleVector()) items.emplace_back(item);
    } else if (value.isBoolList()) {
        for (bool item : value.toBoolList()) items.emplace_back(item);
    } else {
        return false;
    }
    std::ostringstream inner;
    inner << '[';
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) inner << ',';
        if (!write_json_ivalue(inner, items[i])) return false;
    }
    inner << ']';
    out << inner.str();
    return true;
}

// The attributes of a module that describe it (kernel_size, stride, eps, ...): its
// class's constants and plain non-tensor attributes, without private names and
// `training`.
void write_module_attributes(std::ostringstream& out, const torch::jit::Module& module) {
    out << '{';
    bool first = true;
    auto emit = [&](const std::string& name, const c10::IValue& value) {
        if (name.empty() || name[0] == '_' || name == "training") return;
        std::ostringstream text;
        if (!write_json_ivalue(text, value)) return;
        out << (first ? "" : ",");
        first = false;
        write_json_string(out, name);
        out << ':' << text.str();
    };
    const auto type = module.type();
    for (size_t i = 0; i < type->numConstants(); ++i) emit(type->getConstantName(i), type->getConstant(i));
    for (size_t i = 0; i < type->numAttributes(); ++i) {
        if (type->is_parameter(i) || type->is_buffer(i)) continue;
        const auto& attribute_type = type->getAttribute(i);
        if (attribute_type->kind() == c10::TypeKind::ClassType || attribute_type->kind() == c10::TypeKind::TensorType) continue;
        emit(type->getAttributeName(i), module._ivalue()->getSlot(i));
    }
    out << '}';
}

// JSON array of modules:
// [{"path": "", "type": "__torch__.Net", "params": [{"name": "weight", "numel": 72,
//   "requires_grad": true, "storage": 140234..., "shape": [8, 1, 3, 3]}]}]
// `storage` identifies the tensor's memory so Rust can count tied parameters once.
std::string module_tree_json(const torch::jit::Module& root) {
    std::ostringstream out;
    out << '[';
    bool first_module = true;
    for (const auto& named : root.named_modules()) {
        if (!first_module) out << ',';
        first_module = false;
        out << "{\"path\":";
        write_json_string(out, named.name);
        out << ",\"type\":";
        const auto type_name = named.value.type()->name();
        write_json_string(out, type_name ? type_name->qualifiedName() : std::string("?"));
        out << ",\"params\":[";
        bool first_param = true;
        for (const auto& param : named.value.named_parameters(/*recurse=*/false)) {
            if (!first_param) out << ',';
            first_param = false;
            const at::Tensor& value = param.value;
            out << "{\"name\":";
            write_json_string(out, param.name);
            out << ",\"numel\":" << value.numel();
            out << ",\"element_size\":" << value.element_size();
            out << ",\"requires_grad\":" << (value.requires_grad() ? "true" : "false");
            out << ",\"storage\":"
                << reinterpret_cast<std::uintptr_t>(value.unsafeGetTensorImpl());
            out << ",\"shape\":[";
            for (int64_t dim = 0; dim < value.dim(); ++dim) {
                if (dim > 0) out << ',';
                out << value.size(dim);
            }
            out << "]}";
        }
        out << "],\"buffers\":[";
        bool first_buffer = true;
        for (const auto& buffer : named.value.named_buffers(/*recurse=*/false)) {
            out << (first_buffer ? "" : ",") << "{\"name\":";
            first_buffer = false;
            write_json_string(out, buffer.name);
            out << ",\"numel\":" << buffer.value.numel();
            out << ",\"element_size\":" << buffer.value.element_size() << "}";
        }
        out << "],\"attributes\":";
        write_module_attributes(out, named.value);
        out << "}";
    }
    out << ']';
    return out.str();
}

std::string error_text(const std::exception& error) {
    if (auto torch_error = dynamic_cast<const c10::Error*>(&error)) {
        return torch_error->what_without_backtrace();
    }
    return error.what();
}

// "file:line" of the original Python source a range was generated from, else of the
// range itself, else "".
std::string source_location(const torch::jit::SourceRange& range) {
    auto original = range.findSourceRangeThatGenerated();
    const torch::jit::SourceRange& chosen = original ? *original : range;
    auto location = chosen.file_line_col();
    if (!location || std::get<0>(*location).empty()) return "";
    return std::get<0>(*location) + ":" + std::to_string(std::get<1>(*location));
}

// One call of a module instance in the inlined forward graph.
struct ModuleCall {
    int id;
    int parent;                  // -1 for calls made by the root forward
    std::string path;            // dotted instance path
    std::string type;            // qualified TorchScript class name
    std::string site;            // file:line of the call in the parent's forward
    int index;                   // 0 for the first call of this path, 1 for the second, ...
    std::vector<torch::jit::Value*> inputs;   // tensors used inside, produced outside
    std::vector<torch::jit::Value*> outputs;  // tensors produced inside, used outside
};

// The module calls each node sits in, outermost first. Calls are told apart by the
// chain of (instance, call site) frames that lead to them, so two calls of one module
// (a ReLU used twice) are two calls.
struct CallIndex {
    std::map<std::string, int> by_key;
    std::map<std::string, int> calls_per_path;
    std::vector<ModuleCall> calls;
    std::map<const torch::jit::Node*, std::vector<int>> node_calls;

    const std::vector<int>& of(const torch::jit::Node* node) {
        auto found = node_calls.find(node);
        if (found != node_calls.end()) return found->second;
        std::vector<int> chain;
        auto callstack = node->callstack();
        std::string key, path;
        int parent = -1;
        if (callstack) {
            std::optional<torch::jit::InlinedCallStackPtr> frame = *callstack;
            while (frame) {
                const auto& entry = *frame;
                const torch::jit::SourceRange site_range = entry->source_range();
                auto info = entry->module_instance();
                const std::string name = info ? info->instance_name() : std::string();
                key += name + "@" + std::to_string(site_range.start()) + "-" + std::to_string(site_range.end()) + "|";
                if (info && !name.empty() && name != "SELF") {
                    path += (path.empty() ? "" : ".") + name;
                    auto existing = by_key.find(key);
                    int id;
                    if (existing == by_key.end()) {
                        id = static_cast<int>(calls.size());
                        const auto class_type = info->class_type();
                        const auto type_name = class_type ? class_type->name() : std::nullopt;
                        calls.push_back(ModuleCall{id, parent, path, type_name ? type_name->qualifiedName() : "?",
                                                   source_location(site_range), calls_per_path[path]++, {}, {}});
                        by_key[key] = id;
                    } else {
                        id = existing->second;
                    }
                    chain.push_back(id);
                    parent = id;
                }
                frame = entry->callee();
            }
        }
        return node_calls[node] = chain;
    }
};

bool is_tensor(const torch::jit::Value* value) {
    return value->type()->isSubtypeOf(*c10::TensorType::get());
}

// Ops that read only a tensor's metadata (shape checks in library code, often in
// branches the inliner leaves without a call stack). Such a use does not make a value
// an input or output of a module call.
bool reads_metadata_only(const torch::jit::Node* node) {
    static const std::set<std::string> kinds = {
        "aten::size", "aten::dim", "aten::numel", "aten::len", "prim::device", "prim::dtype",
        "prim::layout", "prim::is_cuda", "aten::is_floating_point", "prim::shape", "aten::__is__",
        "aten::__isnot__",
    };
    return kinds.count(node->kind().toQualString()) > 0;
}

bool chain_contains(const std::vector<int>& chain, int call) {
    return std::find(chain.begin(), chain.end(), call) != chain.end();
}

// The forward graph, inlined and without tensor mutation, with its module calls.
struct GraphInfo {
    std::shared_ptr<torch::jit::Graph> graph;
    CallIndex index;
    std::vector<torch::jit::Value*> all_values;  // every tensor value nodes produce, in order
    std::string json;
    // A tensor produced inside an `if` block -> the output the block now also returns
    // it through (None from the other block), one level up (see lift_branch_values).
    std::unordered_map<torch::jit::Value*, torch::jit::Value*> lifted;
    std::set<torch::jit::Value*> lifted_outputs;

    // The top-level value that carries `value` out of every enclosing `if` (itself when
    // it is produced at the top level): what a method can return.
    torch::jit::Value* top_level(torch::jit::Value* value) const {
        for (auto found = lifted.find(value); found != lifted.end(); found = lifted.find(value)) value = found->second;
        return value;
    }
};

// Makes every tensor produced inside the blocks of an `if` (at any depth; loops are
// left alone) reachable from the top level: the `if` gets one more output per value,
// the value's own block returns it and the other block returns None, so the output is
// an Optional[Tensor] that holds the value when that branch ran. Data-dependent
// branches in library code (nn.LSTM's input checks, the Transformer fast path) would
// otherwise hide the module calls inside them from taps and summaries.
void lift_branch_values(torch::jit::Block* block, GraphInfo& info) {
    for (torch::jit::Node* node : block->nodes()) {
        if (node->kind() != c10::prim::If) continue;
        for (torch::jit::Block* branch : node->blocks()) lift_branch_values(branch, info);
        std::vector<std::pair<size_t, torch::jit::Value*>> produced;  // (branch, value)
        for (size_t b = 0; b < node->blocks().size(); ++b) {
            for (torch::jit::Node* inner : node->blocks()[b]->nodes()) {
                for (torch::jit::Value* output : inner->outputs()) {
                    // Tensors, and what nested `if`s lifted (Optional[Tensor]), go up a level.
                    const bool tensor = output->type()->isSubtypeOf(*c10::TensorType::get());
                    if (tensor || info.lifted_outputs.count(output)) produced.emplace_back(b, output);
                }
            }
        }
        for (const auto& [branch, value] : produced) {
            for (size_t b = 0; b < node->blocks().size(); ++b) {
                torch::jit::Block* target = node->blocks()[b];
                if (b == branch) {
                    target->registerOutput(value);
                } else {
                    torch::jit::WithInsertPoint guard(target->return_node());
                    target->registerOutput(target->owningGraph()->insertNode(target->owningGraph()->createNone())->output());
                }
            }
            torch::jit::Value* output = node->addOutput()->setType(c10::OptionalType::create(c10::TensorType::get()));
            info.lifted[value] = output;
            info.lifted_outputs.insert(output);
        }
    }
}

void write_value_ids(std::ostringstream& out, const std::vector<torch::jit::Value*>& values) {
    out << '[';
    for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i]->unique();
    out << ']';
}

// Replaces every `prim::GetAttr[name="training"]` read with the constant false.
void fold_training_flags(torch::jit::Graph& graph) {
    std::vector<torch::jit::Node*> reads;
    std::vector<torch::jit::Block*> blocks{graph.block()};
    while (!blocks.empty()) {
        torch::jit::Block* block = blocks.back();
        blocks.pop_back();
        for (torch::jit::Node* node : block->nodes()) {
            if (node->kind() == c10::prim::GetAttr && node->s(c10::attr::name) == "training" &&
                node->output()->type()->kind() == c10::TypeKind::BoolType) {
                reads.push_back(node);
            }
            for (torch::jit::Block* inner : node->blocks()) blocks.push_back(inner);
        }
    }
    for (torch::jit::Node* read : reads) {
        torch::jit::WithInsertPoint guard(read);
        torch::jit::Value* constant = graph.insertConstant(false);
        read->output()->replaceAllUsesWith(constant);
    }
}

// Marks the tensors a submodule call returns: a `clone` node, tagged with this
// attribute, on each one, inside the call (so it carries the call's frame once inlined).
// A call that returns its input unchanged (StochasticDepth and Dropout in eval mode,
// Identity) has no node of its own that makes its output, so without the mark it would
// have no output, or, when nothing of it is left, no call at all. The marks are removed
// again before the graph is described or run (remove_return_marks). A clone, not an
// alias, so removing mutation treats what follows as it would without the mark.
const c10::Symbol kReturnMark = c10::Symbol::attr("layerlens_return");

// torch::jit::Inline, on each callee's unoptimised graph, recursively, with return marks
// on every submodule call. The callee graphs are inlined into copies, never changed.
void inline_marking_returns(torch::jit::Block* block) {
    for (auto it = block->nodes().begin(), end = block->nodes().end(); it != end;) {
        torch::jit::Node* call = *it++;
        const bool method = call->kind() == c10::prim::CallMethod;
        if (!method && call->kind() != c10::prim::CallFunction) {
            for (torch::jit::Block* inner : call->blocks()) inline_marking_returns(inner);
            continue;
        }
        torch::jit::GraphFunction* callee = torch::jit::tryToGraphFunction(call);
        if (callee == nullptr) continue;
        std::shared_ptr<torch::jit::Graph> body = callee->graph()->copy();
        inline_marking_returns(body->block());
        if (method && call->input(0)->node()->kind() == c10::prim::GetAttr) {
            torch::jit::Node* returned = body->return_node();
            torch::jit::WithInsertPoint guard(returned);
            for (size_t index = 0; index < returned->inputs().size(); ++index) {
                torch::jit::Value* value = returned->input(index);
                if (!is_tensor(value)) continue;
                torch::jit::Value* none = body->insertConstant(c10::IValue());
                torch::jit::Node* mark = body->insertNode(body->create(c10::aten::clone, {value, none}));
                mark->output()->setType(value->type());
                mark->i_(kReturnMark, 1);
                returned->replaceInput(index, mark->output());
            }
        }
        if (!method) call->removeInput(0);  // the function constant, as Inline does
        torch::jit::inlineCallTo(call, callee, body.get());
    }
}

bool is_return_mark(const torch::jit::Node* node) {
    return node->kind() == c10::aten::clone && node->hasAttribute(kReturnMark);
}

// The return marks go (see kReturnMark), once the calls are analysed: each call now
// names the value it returns itself, which for a call that returns its input is a value
// made before it. `nodes` is the analysis' execution order; marks leave it too.
void remove_return_marks(GraphInfo& info, std::vector<torch::jit::Node*>& nodes) {
    std::unordered_map<torch::jit::Value*, torch::jit::Value*> marked;  // mark's output -> its input
    std::vector<torch::jit::Node*> marks;  // in every block, loop bodies too
    auto unmark = [&marked](torch::jit::Value* value) {
        for (auto found = marked.find(value); found != marked.end(); found = marked.find(value)) value = found->second;
        return value;
    };
    std::function<void(torch::jit::Block*)> find_marks = [&](torch::jit::Block* block) {
        for (torch::jit::Node* node : block->nodes()) {
            for (torch::jit::Block* inner : node->blocks()) find_marks(inner);
            if (!is_return_mark(node)) continue;
            // A call in a branch that returns a value made outside the branch keeps its
            // clone: the value the branch lifts out says whether the call ran (a
            // summary leaves out calls that did not), the value itself would not.
            torch::jit::Value* returned = unmark(node->input(0));
            if (info.lifted.count(node->output()) > 0 && info.lifted.count(returned) == 0 &&
                returned->node()->owningBlock() != node->owningBlock()) {
                node->removeAttribute(kReturnMark);
                continue;
            }
            marks.push_back(node);
            marked[node->output()] = node->input(0);
        }
    };
    find_marks(info.graph->block());
    auto unmark_all = [&unmark](std::vector<torch::jit::Value*>& values) {
        std::vector<torch::jit::Value*> unmarked;
        for (torch::jit::Value* value : values) {
            torch::jit::Value* real = unmark(value);
            if (std::find(unmarked.begin(), unmarked.end(), real) == unmarked.end()) unmarked.push_back(real);
        }
        values = std::move(unmarked);
    };
    for (ModuleCall& call : info.index.calls) {
        unmark_all(call.inputs);
        unmark_all(call.outputs);
    }
    info.all_values.erase(std::remove_if(info.all_values.begin(), info.all_values.end(),
                                         [&marked](torch::jit::Value* value) { return marked.count(value) > 0; }),
                          info.all_values.end());
    // A mark made in a branch whose value was made in the same branch: that value is
    // lifted out itself, and the If output that carried the mark now carries it too.
    for (const auto& entry : marked) info.lifted.erase(entry.first);
    nodes.erase(std::remove_if(nodes.begin(), nodes.end(), is_return_mark), nodes.end());
    for (torch::jit::Node* mark : marks) {
        mark->output()->replaceAllUsesWith(mark->input(0));
        info.index.node_calls.erase(mark);
        mark->destroy();
    }
}

GraphInfo analyse(torch::jit::Module& module) {
    GraphInfo info;
    info.graph = module.get_method("forward").graph()->copy();
    inline_marking_returns(info.graph->block());
    // What Inline's optimised callee graphs would have had.
    torch::jit::PeepholeOptimize(info.graph, /*disable_shape_peepholes=*/true);
    torch::jit::ConstantPooling(info.graph);
    // A module returning a tuple (nn.LSTM's `output, (h, c)`) builds it and the caller
    // unpacks it; removing such pairs lets the tensors themselves leave the call.
    torch::jit::LowerSimpleTuples(info.graph);
    // The copy is in eval mode for good: reading `training` gives false. Making that a
    // constant and propagating it removes the training-only branches (batch-norm
    // statistics, dropout), so most module calls end up in straight-line code where
    // they can be tapped. (torch::jit::freeze_module would fold more, but errors raised
    // inside a frozen copy crash the interpreter's error reporting in libtorch 2.11.)
    fold_training_flags(*info.graph);
    torch::jit::ConstantPropagation(info.graph);
    torch::jit::RemoveTensorMutation(info.graph);
    torch::jit::EliminateDeadCode(info.graph);
    lift_branch_values(info.graph->block(), info);
    auto& graph = *info.graph;
    auto& index = info.index;
    const std::vector<int> no_calls;
    // LAYERLENS_SHIM_DUMP=1 prints the rewritten graph to stderr, to see what the shim saw.
    if (std::getenv("LAYERLENS_SHIM_DUMP") != nullptr) graph.dump();

    // Every node in execution order, into the blocks of `if`s (whose values are lifted
    // out) but not into loop bodies. An `if` comes after its blocks' nodes: its outputs
    // are produced when the branch is done, so they stay a call's last output.
    std::vector<torch::jit::Node*> nodes;
    std::function<void(torch::jit::Block*)> collect = [&](torch::jit::Block* block) {
        for (torch::jit::Node* node : block->nodes()) {
            if (node->kind() == c10::prim::If) {
                for (torch::jit::Block* branch : node->blocks()) collect(branch);
            }
            nodes.push_back(node);
        }
    };
    collect(graph.block());
    // Register calls in execution order: constants are pooled at the top of the graph
    // and would otherwise make their module's call come first.
    for (torch::jit::Node* node : nodes) {
        if (node->kind() != c10::prim::Constant) index.of(node);
    }
    // The calls a user sits in: its own, else (control flow the inliner left without a
    // call stack) those of the nearest enclosing node that has one.
    auto user_chain = [&graph, &index](torch::jit::Node* node) -> std::vector<int> {
        while (true) {
            std::vector<int> chain = index.of(node);
            if (!chain.empty() || node->owningBlock() == graph.block()) return chain;
            node = node->owningBlock()->owningNode();
        }
    };
    for (torch::jit::Node* node : nodes) {
        const std::vector<int> chain = index.of(node);
        if (reads_metadata_only(node)) {
            for (torch::jit::Value* output : node->outputs()) {
                if (is_tensor(output)) info.all_values.push_back(output);
            }
            continue;
        }
        // Inputs of a call: tensors its nodes use that come from outside it.
        for (torch::jit::Value* input : node->inputs()) {
            if (!is_tensor(input)) continue;
            const bool from_graph_input = input->node()->kind() == c10::prim::Param;
            const std::vector<int> producer_chain = from_graph_input ? no_calls : index.of(input->node());
            for (int call : chain) {
                if (!chain_contains(producer_chain, call)) {
                    auto& inputs = index.calls[call].inputs;
                    if (std::find(inputs.begin(), inputs.end(), input) == inputs.end()) inputs.push_back(input);
                }
            }
        }
        // Outputs of a call: tensors its nodes produce that are used outside it.
        for (torch::jit::Value* output : node->outputs()) {
            if (!is_tensor(output)) continue;
            info.all_values.push_back(output);
            for (int call : chain) {
                bool escapes = false;
                for (const torch::jit::Use& use : output->uses()) {
                    if (reads_metadata_only(use.user)) continue;
                    if (use.user->kind() == c10::prim::Return || !chain_contains(user_chain(use.user), call)) {
                        escapes = true;
                        break;
                    }
                }
                if (escapes) index.calls[call].outputs.push_back(output);
            }
        }
    }

    remove_return_marks(info, nodes);

    std::ostringstream out;
    std::vector<torch::jit::Value*> graph_inputs;
    for (torch::jit::Value* input : graph.inputs()) {
        if (is_tensor(input)) graph_inputs.push_back(input);
    }
    out << "{\"inputs\":";
    write_value_ids(out, graph_inputs);
    out << ",\"outputs\":";
    write_value_ids(out, {graph.outputs().begin(), graph.outputs().end()});
    out << ",\"nodes\":[";
    bool first = true;
    for (torch::jit::Node* node : nodes) {
        const auto kind = node->kind();
        if (kind == c10::prim::Constant || kind == c10::prim::GetAttr) continue;
        out << (first ? "" : ",") << "{\"kind\":";
        first = false;
        write_json_string(out, kind.toQualString());
        const auto& chain = index.of(node);
        out << ",\"call\":" << (chain.empty() ? -1 : chain.back()) << ",\"source\":";
        write_json_string(out, source_location(node->sourceRange()));
        // An `if` takes what its blocks return as inputs too, so a walk back from its
        // outputs reaches the ops of both branches.
        std::vector<torch::jit::Value*> inputs(node->inputs().begin(), node->inputs().end());
        if (kind == c10::prim::If) {
            for (torch::jit::Block* branch : node->blocks()) inputs.insert(inputs.end(), branch->outputs().begin(), branch->outputs().end());
        }
        out << ",\"inputs\":";
        write_value_ids(out, inputs);
        out << ",\"outputs\":";
        write_value_ids(out, {node->outputs().begin(), node->outputs().end()});
        out << "}";
    }
    out << "],\"calls\":[";
    for (const ModuleCall& call : index.calls) {
        out << (call.id ? "," : "") << "{\"id\":" << call.id << ",\"parent\":" << call.parent << ",\"path\":";
        write_json_string(out, call.path);
        out << ",\"type\":";
        write_json_string(out, call.type);
        out << ",\"site\":";
        write_json_string(out, call.site);
        // A call with an output lifted out of an `if` sits in a data-dependent branch.
        const bool in_branch = std::any_of(call.outputs.begin(), call.outputs.end(),
                                           [&](torch::jit::Value* value) { return info.lifted.count(value) > 0; });
        out << ",\"index\":" << call.index << ",\"in_branch\":" << (in_branch ? "true" : "false") << ",\"inputs\":";
        write_value_ids(out, call.inputs);
        out << ",\"outputs\":";
        write_value_ids(out, call.outputs);
        out << "}";
    }
    out << "],\"tensor_values\":";
    write_value_ids(out, info.all_values);
    out << "}";
    info.json = out.str();
    return info;
}

// Adds `graph` to the module's type as method `name`, with forward's argument names
// and defaults (`mask=None` in a TransformerEncoder), so it is called like forward.
void register_method(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& graph, const std::string& name) {
    auto function = module._ivalue()->compilation_unit()->create_function(
        c10::QualifiedName(*module.type()->name(), name), graph);
    const c10::FunctionSchema& forward = module.get_method("forward").function().getSchema();
    std::vector<c10::Argument> returns{c10::Argument("", graph->outputs().at(0)->type())};
    torch::jit::toGraphFunction(*function).setSchema(forward.cloneWithName(name, "").cloneWithReturns(std::move(returns)));
    module.type()->addMethod(function);
}

// A callback that may append nodes after a base value's copy exists (its graph, the
// base value).
using AfterValue = std::function<void(torch::jit::Graph&, torch::jit::Value*)>;

// A copy of `base`'s inputs and top-level nodes in a new graph (no outputs yet);
// `value_map` maps base values to their copies. `after`, when set, runs for every
// input once all are added and for every node output right after its node.
std::shared_ptr<torch::jit::Graph> copy_body(const std::shared_ptr<torch::jit::Graph>& base,
                                             std::unordered_map<torch::jit::Value*, torch::jit::Value*>& value_map,
                                             const AfterValue& after = nullptr) {
    auto graph = std::make_shared<torch::jit::Graph>();
    for (torch::jit::Value* input : base->inputs()) {
        value_map[input] = graph->addInput()->copyMetadata(input);
    }
    if (after) {
        for (torch::jit::Value* input : base->inputs()) after(*graph, input);
    }
    for (torch::jit::Node* node : base->nodes()) {
        torch::jit::Node* copy = graph->createClone(node, [&](torch::jit::Value* value) { return value_map.at(value); });
        graph->appendNode(copy);
        for (size_t i = 0; i < node->outputs().size(); ++i) value_map[node->outputs()[i]] = copy->outputs()[i];
        if (after) {
            for (torch::jit::Value* output : node->outputs()) after(*graph, output);
        }
    }
    return graph;
}

// Adds method `name` to the module's type: a copy of `base` that returns a tuple of
// `outputs` (values of `base`). With `prune`, every node none of them needs is removed
// by dead-code elimination (nodes with side effects, such as raising on a bad input,
// stay).
void add_method(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& base,
                const std::vector<torch::jit::Value*>& outputs, const std::string& name, bool prune = false) {
    std::unordered_map<torch::jit::Value*, torch::jit::Value*> value_map;
    auto graph = copy_body(base, value_map);
    std::vector<torch::jit::Value*> mapped;
    for (torch::jit::Value* value : outputs) mapped.push_back(value_map.at(value));
    torch::jit::Node* tuple = graph->createTuple(mapped);
    graph->appendNode(tuple);
    graph->registerOutput(tuple->output());
    if (prune) torch::jit::EliminateDeadCode(graph);
    register_method(module, graph, name);
}

// `base`'s output followed by `extra` values: the outputs of forward_taps/forward_all.
std::vector<torch::jit::Value*> with_output(const std::shared_ptr<torch::jit::Graph>& base,
                                            const std::vector<torch::jit::Value*>& extra) {
    std::vector<torch::jit::Value*> outputs{base->outputs().at(0)};
    outputs.insert(outputs.end(), extra.begin(), extra.end());
    return outputs;
}

// The callback `layerlens::observe` calls, set for the duration of one
// layerlens_tapped_observe call on the thread that runs it. It receives a new
// at::Tensor* (owned by the callee) and the tap index.
using ObserveCallback = void (*)(void* user, at::Tensor* tensor, int64_t index);
thread_local ObserveCallback observe_callback = nullptr;
thread_local void* observe_user = nullptr;

// A tap lifted out of an `if` is None when its branch did not run.
void observe(const std::optional<at::Tensor>& tensor, int64_t index) {
    if (observe_callback != nullptr && tensor.has_value() && tensor->defined()) {
        observe_callback(observe_user, new at::Tensor(*tensor), index);
    }
}

// No outputs: CONSERVATIVE alias analysis marks the op as having side effects, so no
// dead-code pass of the graph executor removes it.
TORCH_LIBRARY(layerlens, library) {
    library.def(torch::schema("observe(Tensor? x, int index) -> ()", c10::AliasAnalysisKind::CONSERVATIVE), &observe);
}

// Adds method `name`: a copy of `base` that returns the original output and calls
// `layerlens::observe(value, index)` right after each tapped tensor value is produced
// (graph inputs first), once per distinct value with the index of its first tap.
void add_observe_method(torch::jit::Module& module, const std::shared_ptr<torch::jit::Graph>& base,
                        const std::vector<torch::jit::Value*>& taps, const std::string& name) {
    std::unordered_map<torch::jit::Value*, int64_t> first_tap;
    for (size_t i = 0; i < taps.size(); ++i) {
        const bool tensor = taps[i]->type()->isSubtypeOf(*c10::TensorType::get()) ||
                            taps[i]->type()->isSubtypeOf(*c10::OptionalType::create(c10::TensorType::get()));
        if (tensor) first_tap.emplace(taps[i], static_cast<int64_t>(i));
    }
    const c10::Symbol observe_symbol = c10::Symbol::fromQualString("layerlens::observe");
    std::unordered_map<torch::jit::Value*, torch::jit::Value*> value_map;
    auto observe_if_tapped = [&](torch::jit::Graph& graph, torch::jit::Value* original) {
        auto found = first_tap.find(original);
        if (found == first_tap.end()) return;
        torch::jit::Value* index = graph.insertConstant(found->second);
        graph.appendNode(graph.create(observe_symbol, {value_map.at(original), index}, 0));
    };
    auto graph = copy_body(base, value_map, observe_if_tapped);
    graph->registerOutput(value_map.at(base->outputs().at(0)));
    register_method(module, graph, name);
}

// A loaded module with its tap methods and graph description.
struct TappedModule {
    torch::jit::Module module;
    GraphInfo graph;
    // `forward_taps` returns one tap per module call: the call's last output.
    std::vector<std::string> tap_paths;
    std::vector<int> tap_calls;
    // Per tap: the first tap with the same value (itself when none comes earlier).
    std::vector<int> tap_first;
    // The tap values themselves (in the analysed graph), for pruned methods.
    std::vector<torch::jit::Value*> tap_values;
    // Pruned methods added so far, by name.
    std::set<std::string> pruned;
};

void prepare_tapped(TappedModule& tapped) {
    tapped.graph = analyse(tapped.module);
    std::vector<torch::jit::Value*> taps;
    for (const ModuleCall& call : tapped.graph.index.calls) {
        if (call.outputs.empty()) continue;
        taps.push_back(tapped.graph.top_level(call.outputs.back()));
        tapped.tap_paths.push_back(call.path);
        tapped.tap_calls.push_back(call.id);
    }
    tapped.tap_values = taps;
    for (size_t i = 0; i < taps.size(); ++i) {
        tapped.tap_first.push_back(static_cast<int>(std::find(taps.begin(), taps.end(), taps[i]) - taps.begin()));
    }
    add_method(tapped.module, tapped.graph.graph, with_output(tapped.graph.graph, taps), "forward_taps");
    std::vector<torch::jit::Value*> all_values;
    for (torch::jit::Value* value : tapped.graph.all_values) all_values.push_back(tapped.graph.top_level(value));
    add_method(tapped.module, tapped.graph.graph, with_output(tapped.graph.graph, all_values), "forward_all");
    add_observe_method(tapped.module, tapped.graph.graph, taps, "forward_observe");
}

}  // namespace

extern "C" {

// Loads a TorchScript file on a device (device_type 0 = CPU, 1 = CUDA) in eval mode
// and adds its tap method. Returns an opaque handle, or null with `*out_error` set.
void* layerlens_tapped_load(const char* path, int device_type, int device_index, char** out_error) {
    *out_error = nullptr;
    try {
        c10::Device device = device_type == 1 ? c10::Device(c10::kCUDA, device_index) : c10::Device(c10::kCPU);
        auto tapped = new TappedModule{torch::jit::load(path, device), {}, {}, {}, {}};
        tapped->module.eval();
        try {
            prepare_tapped(*tapped);
        } catch (...) {
            delete tapped;
            throw;
        }
        return tapped;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error_text(error));
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return nullptr;
}

// Every parameter and buffer of the loaded module (recursively, by dotted name), each
// handed to `callback(user, name, tensor, is_buffer)` as a new at::Tensor* the callee
// owns and that shares the module's storage: copying into it changes what the module's
// methods read (a checkpoint's weights and running statistics, for the loss landscape).
// Returns 0, or 1 with `*out_error` set.
using StateCallback = void (*)(void* user, const char* name, at::Tensor* tensor, int is_buffer);
int layerlens_tapped_state(void* handle, StateCallback callback, void* user, char** out_error) {
    *out_error = nullptr;
    try {
        auto tapped = static_cast<TappedModule*>(handle);
        for (const auto& parameter : tapped->module.named_parameters(/*recurse=*/true)) {
            callback(user, parameter.name.c_str(), new at::Tensor(parameter.value), 0);
        }
        for (const auto& buffer : tapped->module.named_buffers(/*recurse=*/true)) {
            callback(user, buffer.name.c_str(), new at::Tensor(buffer.value), 1);
        }
        return 0;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error_text(error));
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

void layerlens_tapped_free(void* handle) { delete static_cast<TappedModule*>(handle); }

int layerlens_tapped_count(void* handle) {
    return static_cast<int>(static_cast<TappedModule*>(handle)->tap_paths.size());
}

// The module path of tap `index`, owned by the handle.
const char* layerlens_tapped_path(void* handle, int index) {
    return static_cast<TappedModule*>(handle)->tap_paths.at(index).c_str();
}

// The call id (see layerlens_tapped_graph_json) of tap `index`.
int layerlens_tapped_call(void* handle, int index) {
    return static_cast<TappedModule*>(handle)->tap_calls.at(index);
}

// The first tap whose value is the same as tap `index`'s (a block's output is often its
// last layer's output); `forward_observe` reports each value once, under that index.
int layerlens_tapped_first(void* handle, int index) {
    return static_cast<TappedModule*>(handle)->tap_first.at(index);
}

// Runs `forward_observe` on `n_inputs` tensors; `callback(user, tensor, index)` gets
// each distinct tapped tensor as soon as it is produced (a new at::Tensor* the callee
// owns). Writes the output (null when not a single tensor) to `*out_output`.
// Returns 0, or 1 with `*out_error` set.
int layerlens_tapped_observe(void* handle, at::Tensor** inputs, int n_inputs, ObserveCallback callback, void* user,
                             at::Tensor** out_output, char** out_error) {
    *out_error = nullptr;
    *out_output = nullptr;
    struct Reset {
        ~Reset() {
            observe_callback = nullptr;
            observe_user = nullptr;
        }
    } reset;
    try {
        auto tapped = static_cast<TappedModule*>(handle);
        std::vector<c10::IValue> arguments;
        for (int i = 0; i < n_inputs; ++i) arguments.emplace_back(*inputs[i]);
        observe_callback = callback;
        observe_user = user;
        c10::IValue result = tapped->module.get_method("forward_observe")(arguments);
        *out_output = result.isTensor() ? new at::Tensor(result.toTensor()) : nullptr;
        return 0;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error_text(error));
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

// Runs a pruned copy of the forward pass that computes only what `selection` needs
// (`n_selected` entries: -1 for the model output, i >= 0 for tap i) and writes one new
// at::Tensor* per entry to `out_values` (null where the value is not a tensor). The
// copy is built on first use and kept. Returns 0, or 1 with `*out_error` set.
int layerlens_tapped_forward_selected(void* handle, at::Tensor** inputs, int n_inputs, const int* selection,
                                      int n_selected, at::Tensor** out_values, char** out_error) {
    *out_error = nullptr;
    try {
        auto tapped = static_cast<TappedModule*>(handle);
        std::string name = "forward_selected";
        std::vector<torch::jit::Value*> outputs;
        for (int i = 0; i < n_selected; ++i) {
            int index = selection[i];
            name += index < 0 ? "_out" : "_" + std::to_string(index);
            outputs.push_back(index < 0 ? tapped->graph.graph->outputs().at(0) : tapped->tap_values.at(index));
        }
        if (tapped->pruned.insert(name).second) {
            add_method(tapped->module, tapped->graph.graph, outputs, name, /*prune=*/true);
        }
        std::vector<c10::IValue> arguments;
        for (int i = 0; i < n_inputs; ++i) arguments.emplace_back(*inputs[i]);
        c10::IValue result = tapped->module.get_method(name)(arguments);
        auto elements = result.toTupleRef().elements();
        for (size_t i = 0; i < elements.size(); ++i) {
            out_values[i] = elements[i].isTensor() ? new at::Tensor(elements[i].toTensor()) : nullptr;
        }
        return 0;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error_text(error));
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

// Number of tensor values `forward_all` returns after the output.
int layerlens_tapped_value_count(void* handle) {
    return static_cast<int>(static_cast<TappedModule*>(handle)->graph.all_values.size());
}

// JSON description of the inlined forward graph, owned by the handle:
// {"inputs": [value ids], "outputs": [value ids],
//  "nodes": [{"kind", "call" (innermost module call or -1), "source" ("file:line"),
//             "inputs", "outputs"}],
//  "calls": [{"id", "parent", "path", "type", "site" (call site "file:line"),
//             "index" (nth call of this path), "inputs", "outputs"}],
//  "tensor_values": [value ids, in the order forward_all returns them]}
const char* layerlens_tapped_graph_json(void* handle) {
    return static_cast<TappedModule*>(handle)->graph.json.c_str();
}

// Runs `forward_taps` (all_values = 0) or `forward_all` (all_values = 1) on `n_inputs`
// tensors (tch tensor pointers, i.e. at::Tensor*). On success writes a new at::Tensor*
// for the output to `*out_output` (null when forward returns a tuple, list or dict) and one per tap (or per tensor value) to
// `out_taps[0 .. count)` (null where a value is not a tensor); the caller owns them.
// Returns 0, or 1 with `*out_error` set.
int layerlens_tapped_forward(void* handle, int all_values, at::Tensor** inputs, int n_inputs,
                             at::Tensor** out_output, at::Tensor** out_taps, char** out_error) {
    *out_error = nullptr;
    try {
        auto tapped = static_cast<TappedModule*>(handle);
        std::vector<c10::IValue> arguments;
        for (int i = 0; i < n_inputs; ++i) arguments.emplace_back(*inputs[i]);
        c10::IValue result = tapped->module.get_method(all_values ? "forward_all" : "forward_taps")(arguments);
        auto elements = result.toTupleRef().elements();
        // A model may return a tuple or dict; then there is no single output tensor.
        *out_output = elements.at(0).isTensor() ? new at::Tensor(elements.at(0).toTensor()) : nullptr;
        for (size_t i = 1; i < elements.size(); ++i) {
            out_taps[i - 1] = elements[i].isTensor() ? new at::Tensor(elements[i].toTensor()) : nullptr;
        }
        return 0;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error_text(error));
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

// Loads the TorchScript file at `path` on the CPU and writes its module tree as JSON
// to `*out_json`. Returns 0 on success; otherwise 1 with a message in `*out_error`.
int layerlens_module_tree(const char* path, char** out_json, char** out_error) {
    *out_json = nullptr;
    *out_error = nullptr;
    try {
        torch::jit::Module module = torch::jit::load(path, torch::kCPU);
        *out_json = copy_to_c_string(module_tree_json(module));
        return 0;
    } catch (const c10::Error& error) {
        *out_error = copy_to_c_string(error.what_without_backtrace());
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error.what());
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

void layerlens_free_string(char* text) { std::free(text); }

// Whether cuDNN convolutions may round float32 to TF32 (PyTorch's default: yes). cuDNN
// picks other algorithms for other batch sizes, and in TF32 their results differ by
// far more than float32 rounding, so an explanation would depend on the batch it ran
// in; the daemon turns it off unless told otherwise (--allow-tf32).
void layerlens_set_cudnn_tf32(int allow) { at::globalContext().setAllowTF32CuDNN(allow != 0); }

// Memory of CUDA device `index`: what the driver reports free and in total, and what
// libtorch's caching allocator holds there without handing it out (free to this
// process, though not to the driver). Asked through c10's device-allocator interface,
// so this file needs no CUDA headers; without a usable device it fails with the
// driver's message. Returns 0 on success; otherwise 1 with a message in `*out_error`.
int layerlens_cuda_memory(int index, uint64_t* out_free, uint64_t* out_total, uint64_t* out_cached, char** out_error) {
    *out_error = nullptr;
    try {
        auto device = static_cast<c10::DeviceIndex>(index);
        c10::DeviceAllocator* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
        auto [free, total] = allocator->getMemoryInfo(device);
        auto stats = allocator->getDeviceStats(device);
        auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
        int64_t cached = stats.reserved_bytes[aggregate].current - stats.allocated_bytes[aggregate].current;
        *out_free = free;
        *out_total = total;
        *out_cached = cached > 0 ? static_cast<uint64_t>(cached) : 0;
        return 0;
    } catch (const c10::Error& error) {
        *out_error = copy_to_c_string(error.what_without_backtrace());
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error.what());
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception");
    }
    return 1;
}

}  // extern "C"
