// What every fuzz target shares: invariant checks that stop the run with a
// message (libFuzzer then saves the input as crash-*), and the seeded bug the
// sanitizer stage's self-check turns on to prove a finding fails the stage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

namespace vnetct::fuzz {

[[noreturn]] inline void invariant_broken(const char* what, const char* file, int line) {
    std::fprintf(stderr, "vnetct fuzz: invariant broken at %s:%d: %s\n", file, line, what);
    std::abort();
}

// With VNETCT_FUZZ_SEEDED_BUG=heap-overflow in the environment, every input
// reads one byte past a heap copy of itself: AddressSanitizer must stop the
// run (harness/test/test_sanitizers.py, the stage's self-check). Never set
// otherwise; the libraries under test carry no such switch.
inline void maybe_seeded_bug(std::span<const std::uint8_t> input) {
    static const bool seeded = [] {
        const char* value = std::getenv("VNETCT_FUZZ_SEEDED_BUG");
        return value != nullptr && std::string_view(value) == "heap-overflow";
    }();
    if (!seeded) {
        return;
    }
    auto* copy = new std::uint8_t[input.size() + 1];
    std::memcpy(copy, input.data(), input.size());
    volatile std::uint8_t past_the_end = copy[input.size() + 1];
    (void)past_the_end;
    delete[] copy;
}

}  // namespace vnetct::fuzz

#define VNETCT_FUZZ_CHECK(condition)                                            \
    do {                                                                        \
        if (!(condition)) {                                                     \
            ::vnetct::fuzz::invariant_broken(#condition, __FILE__, __LINE__);  \
        }                                                                       \
    } while (false)
