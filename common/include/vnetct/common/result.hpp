// Errors are values at module boundaries: Result<T, Errc> carries either a T or
// an Error naming a module-specific error code plus the concrete detail.
//
// Each module declares its codes once, as an X-macro list of (Name, "sentence"),
// and VNETCT_DEFINE_ERRC generates both the enum class and to_string from that
// one list, so messages cannot drift from codes.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace vnetct {

template <typename Errc>
struct Error {
    Errc code;
    std::string detail;

    // "<sentence for code>: <detail>"
    [[nodiscard]] std::string message() const {
        std::string text{to_string(code)};
        if (!detail.empty()) {
            text += ": ";
            text += detail;
        }
        return text;
    }
};

template <typename T, typename Errc>
using Result = tl::expected<T, Error<Errc>>;

template <typename Errc>
[[nodiscard]] tl::unexpected<Error<Errc>> fail(Errc code, std::string detail = {}) {
    return tl::unexpected<Error<Errc>>(Error<Errc>{code, std::move(detail)});
}

}  // namespace vnetct

#define VNETCT_ERRC_ENUM_ENTRY(name, sentence) name,
#define VNETCT_ERRC_STRING_CASE(name, sentence) \
    case Type::name:                            \
        return sentence;

// VNETCT_DEFINE_ERRC(QmpErrc, VNETCT_QMP_ERRORS) defines `enum class QmpErrc`
// and `std::string_view to_string(QmpErrc)` in the current namespace.
#define VNETCT_DEFINE_ERRC(EnumName, LIST)                          \
    enum class EnumName { LIST(VNETCT_ERRC_ENUM_ENTRY) };           \
    [[nodiscard]] inline std::string_view to_string(EnumName code) { \
        using Type = EnumName;                                      \
        switch (code) { LIST(VNETCT_ERRC_STRING_CASE) }             \
        return "unknown error";                                     \
    }
