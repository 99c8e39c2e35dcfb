// The one way a C++ error value becomes a Python exception.
//
// A binding unwraps a Result<T, Errc> with unwrap(); an error throws
// Failure<Errc>, and the translator bind_error<Errc>() registered turns it into
// the Python type bound for Errc: message = Error::message(), `code` = the
// code's name (name_of, e.g. "Timeout"), the same for every error type.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "vnetct/common/result.hpp"

namespace vnetct::harness {

template <typename Errc>
struct Failure : std::runtime_error {
    explicit Failure(const Error<Errc>& error) : std::runtime_error(error.message()), code(error.code) {}
    Errc code;
};

template <typename T, typename Errc>
T unwrap(Result<T, Errc>&& result) {
    if (!result) {
        throw Failure<Errc>(result.error());
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*result);
    }
}

namespace detail {

// The Python types raised for one Errc: one for every code, and subclasses for
// single codes (HostTimeout for HostErrc::Timeout).
template <typename Errc>
struct ErrorTypes {
    pybind11::object general;
    std::vector<std::pair<Errc, pybind11::object>> by_code;

    [[nodiscard]] pybind11::handle type_for(Errc code) const {
        for (const auto& [special, type] : by_code) {
            if (special == code) {
                return type;
            }
        }
        return general;
    }
};

// Deliberately leaked (never destroyed): a static py::object would be released
// after the interpreter has finalized, which can crash at exit.
template <typename Errc>
ErrorTypes<Errc>& error_types() {
    static ErrorTypes<Errc>& types = *new ErrorTypes<Errc>();
    return types;
}

inline pybind11::object new_exception_type(pybind11::module_& module, const char* python_name, const char* doc,
                                           pybind11::handle base) {
    const std::string qualified = std::string(pybind11::str(module.attr("__name__"))) + "." + python_name;
    auto type = pybind11::reinterpret_steal<pybind11::object>(
        PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base.ptr(), nullptr));
    if (!type) {
        throw pybind11::error_already_set();
    }
    module.attr(python_name) = type;
    return type;
}

template <typename Errc>
void register_translator() {
    pybind11::register_exception_translator([](std::exception_ptr pointer) {
        try {
            if (pointer) {
                std::rethrow_exception(pointer);
            }
        } catch (const Failure<Errc>& failure) {
            pybind11::gil_scoped_acquire gil;
            const pybind11::handle type = error_types<Errc>().type_for(failure.code);
            pybind11::object exception = type(failure.what());
            exception.attr("code") = std::string(name_of(failure.code));
            PyErr_SetObject(type.ptr(), exception.ptr());
        }
    });
}

}  // namespace detail

// Creates module.<python_name> and raises it for every Failure<Errc> of the
// listed error enums (ModelError serves ModelErrc and TraceErrc).
template <typename... Errcs>
pybind11::handle bind_error(pybind11::module_& module, const char* python_name, const char* doc) {
    pybind11::object type = detail::new_exception_type(module, python_name, doc, PyExc_Exception);
    ((detail::error_types<Errcs>().general = type), ...);
    (detail::register_translator<Errcs>(), ...);
    return type;
}

// A subclass of Errc's type raised for one code instead (HostTimeout).
// bind_error<Errc> comes first.
template <typename Errc>
pybind11::handle bind_error_code(pybind11::module_& module, Errc code, const char* python_name, const char* doc) {
    auto& types = detail::error_types<Errc>();
    pybind11::object type = detail::new_exception_type(module, python_name, doc, types.general);
    types.by_code.emplace_back(code, type);
    return type;
}

}  // namespace vnetct::harness
