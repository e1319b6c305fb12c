// layerlens C++ shim: exposes what tch does not, as data, and leaves all policy to Rust.
//
// Today that is the module tree of a TorchScript file: every module instance with its
// dotted path, its qualified TorchScript type name and the parameters it owns directly.
// Later issues add the inlined forward graph and the tap rewrite (see DESIGN.md).
//
// Rules: C++ exceptions never cross the FFI boundary (every entry point catches and
// returns an error string); strings handed to Rust are malloc'd and freed with
// layerlens_free_string.

#include <torch/script.h>

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

}  // namespace

extern "C" {

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
