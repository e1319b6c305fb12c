// Strings handed from the C++ shim (shim.cpp, ops.cpp) to Rust: malloc'd copies, freed
// with layerlens_free_string, and JSON string literals. One header so both files write
// them the same way.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

namespace layerlens_text {

// A malloc'd, NUL-terminated copy (nullptr when out of memory).
inline char* copy_to_c_string(const std::string& text) {
    char* out = static_cast<char*>(std::malloc(text.size() + 1));
    if (out != nullptr) {
        std::memcpy(out, text.c_str(), text.size() + 1);
    }
    return out;
}

// `text` as a JSON string literal, control characters escaped.
inline void write_json_string(std::ostringstream& out, const std::string& text) {
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

}  // namespace layerlens_text
