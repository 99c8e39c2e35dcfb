// Errors are values at module boundaries: Result<T, Errc> carries either a T or
// an Error naming a module-specific error code plus the concrete detail.
//
// Each module declares its codes once, as an X-macro list of (Name, "sentence"),
// and VNETCT_DEFINE_ERRC generates the enum class, to_string (the sentence) and
// name_of (the code's name) from that one list, so messages cannot drift from
// codes. Every other enum with a spelling uses the same macro (VNETCT_DEFINE_ENUM).
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

// One list, X(Name, "text"), gives an enum class and its two spellings:
// to_string(E) is the text (a sentence for an error code, the wire/JSON word for
// other enums) and name_of(E) the enumerator's name ("Timeout"), which is what
// the Python layer puts in an exception's `code`.
//
// VNETCT_DEFINE_ENUM(QmpErrc, VNETCT_QMP_ERRORS) defines `enum class QmpErrc`,
// `std::string_view to_string(QmpErrc)` and `std::string_view name_of(QmpErrc)`
// in the current namespace. VNETCT_DEFINE_VALUED_ENUM(Type, std::uint16_t, LIST)
// takes X(Name, value, "text") for an enum whose numbers are fixed (a wire code).
#define VNETCT_ENUM_ENTRY(name, text) name,
#define VNETCT_ENUM_TEXT_CASE(name, text) \
    case Type::name:                      \
        return text;
#define VNETCT_ENUM_NAME_CASE(name, text) \
    case Type::name:                      \
        return #name;
#define VNETCT_VALUED_ENUM_ENTRY(name, value, text) name = value,
#define VNETCT_VALUED_ENUM_TEXT_CASE(name, value, text) VNETCT_ENUM_TEXT_CASE(name, text)
#define VNETCT_VALUED_ENUM_NAME_CASE(name, value, text) VNETCT_ENUM_NAME_CASE(name, text)

#define VNETCT_ENUM_STRINGS(EnumName, LIST, TEXT_CASE, NAME_CASE)               \
    [[nodiscard]] constexpr std::string_view to_string(EnumName value) {        \
        using Type = EnumName;                                                  \
        switch (value) { LIST(TEXT_CASE) }                                      \
        return "unknown";                                                       \
    }                                                                           \
    [[nodiscard]] constexpr std::string_view name_of(EnumName value) {          \
        using Type = EnumName;                                                  \
        switch (value) { LIST(NAME_CASE) }                                      \
        return "Unknown";                                                       \
    }

#define VNETCT_DEFINE_ENUM(EnumName, LIST)             \
    enum class EnumName { LIST(VNETCT_ENUM_ENTRY) };   \
    VNETCT_ENUM_STRINGS(EnumName, LIST, VNETCT_ENUM_TEXT_CASE, VNETCT_ENUM_NAME_CASE)

#define VNETCT_DEFINE_VALUED_ENUM(EnumName, Underlying, LIST)      \
    enum class EnumName : Underlying { LIST(VNETCT_VALUED_ENUM_ENTRY) }; \
    VNETCT_ENUM_STRINGS(EnumName, LIST, VNETCT_VALUED_ENUM_TEXT_CASE, VNETCT_VALUED_ENUM_NAME_CASE)

// An error code list: X(Name, "sentence"); Error::message() starts with the sentence.
#define VNETCT_DEFINE_ERRC(EnumName, LIST) VNETCT_DEFINE_ENUM(EnumName, LIST)
