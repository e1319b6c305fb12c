// layerlens op caller: runs one operator of libtorch's dispatcher, boxed, for the
// executor of exported (`torch.export`, `.pt2`) programs in src/exported/.
//
// The executor reads the archive and walks the graph in Rust; this file only finds an
// operator's schema (`c10::Dispatcher::findSchemaOrThrow`) and calls it with
// `callBoxed`, arguments in schema order as Rust placed them, a schema default where
// Rust asks for one. Calls run outside inference mode, so autograd records them and
// input gradients, layer gradients and taps work as for TorchScript (DESIGN.md).
//
// Rules as in shim.cpp: no C++ exception crosses the FFI boundary (every entry point
// catches and returns a malloc'd error string, freed with layerlens_free_string);
// tensors cross as `at::Tensor*` (tch's C_tensor), new ones owned by Rust.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>
#include <ATen/ScalarOps.h>

#include "text.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

extern "C" void layerlens_free_string(char* text);

namespace {

using layerlens_text::copy_to_c_string;
using layerlens_text::write_json_string;

struct Op {
    c10::OperatorHandle handle;
    explicit Op(c10::OperatorHandle h) : handle(std::move(h)) {}
};

}  // namespace

// Mirrors `OpArg` in src/exported/ffi.rs.
struct layerlens_op_arg {
    int32_t kind;
    int64_t int_value;
    double float_value;
    const int64_t* ints;
    const double* floats;
    at::Tensor* tensor;
    at::Tensor* const* tensors;
    size_t len;
    const char* text;
};

// Mirrors `OpResult` in src/exported/ffi.rs.
struct layerlens_op_result {
    int32_t kind;
    at::Tensor* tensor;
    int64_t int_value;
    double float_value;
    at::Tensor** tensors;
    size_t len;
};

enum ArgKind : int32_t {
    ARG_DEFAULT = 0,
    ARG_NONE = 1,
    ARG_TENSOR = 2,
    ARG_INT = 3,
    ARG_FLOAT = 4,
    ARG_BOOL = 5,
    ARG_INTS = 6,
    ARG_FLOATS = 7,
    ARG_BOOLS = 8,
    ARG_TENSORS = 9,
    ARG_OPTIONAL_TENSORS = 10,
    ARG_STRING = 11,
    ARG_SCALAR_TYPE = 12,
    ARG_LAYOUT = 13,
    ARG_DEVICE = 14,
    ARG_MEMORY_FORMAT = 15,
};

enum ResultKind : int32_t {
    RESULT_NONE = 0,
    RESULT_TENSOR = 1,
    RESULT_INT = 2,
    RESULT_FLOAT = 3,
    RESULT_BOOL = 4,
    RESULT_TENSORS = 5,
    RESULT_OTHER = 6,
};

extern "C" {

// Finds `name` (`aten::conv2d`) with `overload` (`""` for `.default`). On success returns
// a handle and, in `out_schema`, JSON: {"arguments": [{"name", "type", "has_default",
// "kwarg_only", "mutable"}], "returns": ["Tensor", ...]}.
void* layerlens_op_find(const char* name, const char* overload, char** out_schema, char** out_error) {
    try {
        auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
        const auto& schema = handle.schema();
        std::ostringstream json;
        json << "{\"arguments\":[";
        for (size_t i = 0; i < schema.arguments().size(); ++i) {
            const auto& argument = schema.arguments()[i];
            if (i > 0) json << ',';
            json << "{\"name\":";
            write_json_string(json, argument.name());
            json << ",\"type\":";
            write_json_string(json, argument.type()->str());
            json << ",\"has_default\":" << (argument.default_value().has_value() ? "true" : "false");
            json << ",\"kwarg_only\":" << (argument.kwarg_only() ? "true" : "false");
            bool is_mutable = argument.alias_info() != nullptr && argument.alias_info()->isWrite();
            json << ",\"mutable\":" << (is_mutable ? "true" : "false") << '}';
        }
        json << "],\"returns\":[";
        for (size_t i = 0; i < schema.returns().size(); ++i) {
            if (i > 0) json << ',';
            write_json_string(json, schema.returns()[i].type()->str());
        }
        json << "]}";
        *out_schema = copy_to_c_string(json.str());
        return new Op(handle);
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error.what());
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception while looking up an operator");
    }
    return nullptr;
}

void layerlens_op_free(void* handle) {
    delete static_cast<Op*>(handle);
}

void layerlens_op_free_tensor_array(at::Tensor** tensors) {
    delete[] tensors;
}

// Calls the operator with `n_args` arguments in schema order (fewer: the rest take
// their defaults). Results go to `out` (at most `max_out`; `n_out` says how many).
int layerlens_op_call(void* handle, const layerlens_op_arg* args, size_t n_args, layerlens_op_result* out, size_t max_out,
                      size_t* n_out, char** out_error) {
    try {
        const auto& op = static_cast<Op*>(handle)->handle;
        const auto& schema = op.schema();
        const auto& arguments = schema.arguments();
        if (n_args > arguments.size()) {
            *out_error = copy_to_c_string(schema.name() + " takes " + std::to_string(arguments.size()) + " arguments, got " +
                                         std::to_string(n_args));
            return 1;
        }
        torch::jit::Stack stack;
        stack.reserve(arguments.size());
        for (size_t i = 0; i < arguments.size(); ++i) {
            const layerlens_op_arg* arg = i < n_args ? &args[i] : nullptr;
            if (arg == nullptr || arg->kind == ARG_DEFAULT) {
                if (!arguments[i].default_value().has_value()) {
                    *out_error = copy_to_c_string(schema.name() + ": argument '" + arguments[i].name() + "' has no value and no default");
                    return 1;
                }
                stack.emplace_back(*arguments[i].default_value());
                continue;
            }
            // A Python number where the schema wants a Tensor (`aten::add.Tensor(x, 1)`)
            // becomes a wrapped-number scalar tensor, as in eager PyTorch, so type
            // promotion treats it as a Python scalar.
            bool wants_tensor = arguments[i].type()->kind() == c10::TypeKind::TensorType;
            if (wants_tensor && (arg->kind == ARG_INT || arg->kind == ARG_FLOAT || arg->kind == ARG_BOOL)) {
                at::Scalar scalar = arg->kind == ARG_INT ? at::Scalar(arg->int_value)
                                    : arg->kind == ARG_FLOAT ? at::Scalar(arg->float_value)
                                                             : at::Scalar(arg->int_value != 0);
                at::Tensor wrapped = at::scalar_to_tensor(scalar);
                wrapped.unsafeGetTensorImpl()->set_wrapped_number(true);
                stack.emplace_back(std::move(wrapped));
                continue;
            }
            switch (arg->kind) {
                case ARG_NONE: stack.emplace_back(); break;
                case ARG_TENSOR: stack.emplace_back(*arg->tensor); break;
                case ARG_INT: stack.emplace_back(arg->int_value); break;
                case ARG_FLOAT: stack.emplace_back(arg->float_value); break;
                case ARG_BOOL: stack.emplace_back(arg->int_value != 0); break;
                case ARG_INTS: stack.emplace_back(std::vector<int64_t>(arg->ints, arg->ints + arg->len)); break;
                case ARG_FLOATS: stack.emplace_back(std::vector<double>(arg->floats, arg->floats + arg->len)); break;
                case ARG_BOOLS: {
                    c10::List<bool> list;
                    for (size_t k = 0; k < arg->len; ++k) list.push_back(arg->ints[k] != 0);
                    stack.emplace_back(std::move(list));
                    break;
                }
                case ARG_TENSORS: {
                    std::vector<at::Tensor> list;
                    list.reserve(arg->len);
                    for (size_t k = 0; k < arg->len; ++k) list.push_back(*arg->tensors[k]);
                    stack.emplace_back(std::move(list));
                    break;
                }
                case ARG_OPTIONAL_TENSORS: {
                    c10::List<std::optional<at::Tensor>> list;
                    for (size_t k = 0; k < arg->len; ++k) {
                        if (arg->tensors[k] == nullptr) {
                            list.push_back(std::nullopt);
                        } else {
                            list.push_back(*arg->tensors[k]);
                        }
                    }
                    stack.emplace_back(std::move(list));
                    break;
                }
                case ARG_STRING: stack.emplace_back(std::string(arg->text)); break;
                case ARG_SCALAR_TYPE: stack.emplace_back(static_cast<c10::ScalarType>(arg->int_value)); break;
                case ARG_LAYOUT: stack.emplace_back(static_cast<c10::Layout>(arg->int_value)); break;
                case ARG_DEVICE: stack.emplace_back(c10::Device(std::string(arg->text))); break;
                case ARG_MEMORY_FORMAT: stack.emplace_back(static_cast<c10::MemoryFormat>(arg->int_value)); break;
                default:
                    *out_error = copy_to_c_string("unknown argument kind " + std::to_string(arg->kind));
                    return 1;
            }
        }
        op.callBoxed(&stack);
        if (stack.size() > max_out) {
            *out_error = copy_to_c_string(schema.name() + " returned " + std::to_string(stack.size()) + " values, more than expected");
            return 1;
        }
        *n_out = stack.size();
        for (size_t i = 0; i < stack.size(); ++i) {
            auto& value = stack[i];
            layerlens_op_result& result = out[i];
            result = layerlens_op_result{RESULT_OTHER, nullptr, 0, 0.0, nullptr, 0};
            if (value.isNone()) {
                result.kind = RESULT_NONE;
            } else if (value.isTensor()) {
                result.kind = RESULT_TENSOR;
                result.tensor = new at::Tensor(std::move(value).toTensor());
            } else if (value.isInt()) {
                result.kind = RESULT_INT;
                result.int_value = value.toInt();
            } else if (value.isSymInt()) {
                result.kind = RESULT_INT;
                result.int_value = value.toSymInt().guard_int(__FILE__, __LINE__);
            } else if (value.isDouble()) {
                result.kind = RESULT_FLOAT;
                result.float_value = value.toDouble();
            } else if (value.isBool()) {
                result.kind = RESULT_BOOL;
                result.int_value = value.toBool() ? 1 : 0;
            } else if (value.isTensorList()) {
                auto list = value.toTensorVector();
                result.kind = RESULT_TENSORS;
                result.len = list.size();
                result.tensors = new at::Tensor*[list.size()];
                for (size_t k = 0; k < list.size(); ++k) result.tensors[k] = new at::Tensor(std::move(list[k]));
            }
        }
        return 0;
    } catch (const std::exception& error) {
        *out_error = copy_to_c_string(error.what());
    } catch (...) {
        *out_error = copy_to_c_string("unknown C++ exception in an operator call");
    }
    return 1;
}

}  // extern "C"
