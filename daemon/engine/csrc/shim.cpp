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
// Rules: C++ exceptions never cross the FFI boundary (every entry point catches and
// returns an error string); strings handed to Rust are malloc'd and freed with
// layerlens_free_string.

#include <torch/script.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include <map>
#include <set>
#include <vector>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

namespace {

char* copy_to_c_string(const std::string& text) {
    char* out = static_cast<char*>(std::malloc(text.size() + 1));
    if (out != nullptr) {
        std::memcpy(out, text.c_str(), text.size() + 1);
    }
    return out;
}

void write_json_string(std::ostringstream& out, const std::string& text) {
    out << '"';
    for (unsigned char c : text) {
        switch (c) {
            case '"': out << "\\\""; break;
            case '\\': out << "\\\\"; break;
            case '\n': out << "\\n"; break;
            case '\t': out << "\\t"; break;
            default:
                if (c < 0x20) {
                    char escaped[8];
                    std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                    out << escaped;
                } else {
                    out << c;
                }
        }
    }
    out << '"';
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
        out << "]}";
    }
    out << ']';
    return out.str();
}

// Dotted module path of the instance a node was inlined from ("" for the root).
std::string node_module_path(const torch::jit::Node* node) {
    auto callstack = node->callstack();
    if (!callstack) return "";
    std::string path;
    for (const auto& entry : (*callstack)->vec()) {
        const auto& info = std::get<2>(entry);
        if (!info) continue;
        const std::string name = info->instance_name();
        if (name.empty() || name == "SELF") continue;
        if (!path.empty()) path += ".";
        path += name;
    }
    return path;
}

bool inside(const std::string& path, const std::string& scope) {
    return path == scope || (path.size() > scope.size() && path.compare(0, scope.size(), scope) == 0 &&
                             path[scope.size()] == '.');
}

std::string error_text(const std::exception& error) {
    if (auto torch_error = dynamic_cast<const c10::Error*>(&error)) {
        return torch_error->what_without_backtrace();
    }
    return error.what();
}

// A loaded module with its tap method.
struct TappedModule {
    torch::jit::Module module;
    std::vector<std::string> tap_paths;
};

// Adds `forward_taps` to the module's type and returns the module paths of its taps
// in order.
std::vector<std::string> add_tap_method(torch::jit::Module& module) {
    auto graph = module.get_method("forward").graph()->copy();
    torch::jit::Inline(*graph);
    torch::jit::RemoveTensorMutation(graph);
    torch::jit::EliminateDeadCode(graph);

    // For every module path, the last tensor value produced inside it and used
    // outside it (or returned).
    std::map<std::string, torch::jit::Value*> tap_of;
    std::vector<std::string> order;
    for (torch::jit::Node* node : graph->nodes()) {
        const std::string path = node_module_path(node);
        if (path.empty()) continue;
        // Every enclosing instance: "a.b.c" -> "a", "a.b", "a.b.c".
        std::vector<std::string> scopes;
        for (size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', dot + 1)) {
            scopes.push_back(path.substr(0, dot));
        }
        scopes.push_back(path);
        for (torch::jit::Value* output : node->outputs()) {
            if (!output->type()->isSubtypeOf(*c10::TensorType::get())) continue;
            for (const std::string& scope : scopes) {
                bool escapes = false;
                for (const torch::jit::Use& use : output->uses()) {
                    if (use.user->kind() == c10::prim::Return || !inside(node_module_path(use.user), scope)) {
                        escapes = true;
                        break;
                    }
                }
                if (!escapes) continue;
                if (tap_of.find(scope) == tap_of.end()) order.push_back(scope);
                tap_of[scope] = output;
            }
        }
    }
    std::vector<torch::jit::Value*> outputs{graph->outputs().at(0)};
    std::vector<std::string> paths;
    for (const std::string& path : order) {
        outputs.push_back(tap_of[path]);
        paths.push_back(path);
    }
    torch::jit::Node* tuple = graph->createTuple(outputs);
    graph->appendNode(tuple);
    graph->eraseOutput(0);
    graph->registerOutput(tuple->output());
    auto function = module._ivalue()->compilation_unit()->create_function(
        c10::QualifiedName(*module.type()->name(), "forward_taps"), graph);
    module.type()->addMethod(function);
    return paths;
}

}  // namespace

extern "C" {

// Loads a TorchScript file on a device (device_type 0 = CPU, 1 = CUDA) in eval mode
// and adds its tap method. Returns an opaque handle, or null with `*out_error` set.
void* layerlens_tapped_load(const char* path, int device_type, int device_index, char** out_error) {
    *out_error = nullptr;
    try {
        c10::Device device = device_type == 1 ? c10::Device(c10::kCUDA, device_index) : c10::Device(c10::kCPU);
        auto tapped = new TappedModule{torch::jit::load(path, device), {}};
        tapped->module.eval();
        try {
            tapped->tap_paths = add_tap_method(tapped->module);
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

void layerlens_tapped_free(void* handle) { delete static_cast<TappedModule*>(handle); }

int layerlens_tapped_count(void* handle) {
    return static_cast<int>(static_cast<TappedModule*>(handle)->tap_paths.size());
}

// The module path of tap `index`, owned by the handle.
const char* layerlens_tapped_path(void* handle, int index) {
    return static_cast<TappedModule*>(handle)->tap_paths.at(index).c_str();
}

// Runs forward_taps on `n_inputs` tensors (tch tensor pointers, i.e. at::Tensor*).
// On success writes a new at::Tensor* for the output to `*out_output` and one per tap
// to `out_taps[0 .. count)` (a tap whose value is not a tensor gets null); the caller
// owns them. Returns 0, or 1 with `*out_error` set.
int layerlens_tapped_forward(void* handle, at::Tensor** inputs, int n_inputs, at::Tensor** out_output,
                             at::Tensor** out_taps, char** out_error) {
    *out_error = nullptr;
    try {
        auto tapped = static_cast<TappedModule*>(handle);
        std::vector<c10::IValue> arguments;
        for (int i = 0; i < n_inputs; ++i) arguments.emplace_back(*inputs[i]);
        c10::IValue result = tapped->module.get_method("forward_taps")(arguments);
        auto elements = result.toTupleRef().elements();
        if (!elements.at(0).isTensor()) {
            throw std::runtime_error("the model's output is not a single tensor");
        }
        *out_output = new at::Tensor(elements.at(0).toTensor());
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

}  // extern "C"
