// The sanitizer canary: `sanitizer_canary <bug>` commits one seeded bug so
// that the sanitizer stage can prove its tree catches it (see CMakeLists.txt).
//   none             nothing (the ctest: must pass)
//   heap-overflow    reads one byte past a heap block      (AddressSanitizer)
//   leak             loses a heap block                    (LeakSanitizer)
//   signed-overflow  INT_MAX + 1                           (UBSan)
//   data-race        two threads write one int unlocked    (ThreadSanitizer)
// Run as a GoogleTest would be (`--gtest_filter=...`), it takes the bug from
// VNETCT_CANARY_BUG instead (none when unset).
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <thread>

namespace {

// Kept out of the optimiser's sight, so the bug is not folded away.
volatile int g_opaque = 1;

int heap_overflow() {
    int* block = new int[4];
    const int value = block[4 + g_opaque - 1];
    delete[] block;
    return value;
}

int* volatile g_block = nullptr;

int leak() {
    g_block = new int[4];
    g_block = nullptr;  // the only pointer to it is gone
    return 0;
}

int signed_overflow() {
    int value = INT_MAX;
    value += g_opaque;
    return value == 0 ? 1 : 0;
}

int shared_value = 0;

int data_race() {
    std::thread writer([] { shared_value = g_opaque; });
    shared_value = 2;
    writer.join();
    return shared_value == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::string_view bug = argc > 1 ? argv[1] : "";
    if (bug.starts_with("--gtest")) {
        const char* seeded = std::getenv("VNETCT_CANARY_BUG");
        bug = seeded != nullptr ? seeded : "none";
    }
    if (bug == "none") {
        return 0;
    }
    if (bug == "heap-overflow") {
        return heap_overflow();
    }
    if (bug == "leak") {
        return leak();
    }
    if (bug == "signed-overflow") {
        return signed_overflow();
    }
    if (bug == "data-race") {
        return data_race();
    }
    std::fprintf(stderr, "usage: sanitizer_canary none|heap-overflow|leak|signed-overflow|data-race\n");
    return 2;
}
