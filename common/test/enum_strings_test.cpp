// VNETCT_DEFINE_ENUM / VNETCT_DEFINE_ERRC / VNETCT_DEFINE_VALUED_ENUM: one
// X-macro list gives the enum, to_string (the text) and name_of (the name).
#include "vnetct/common/result.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>

namespace vnetct::test {

#define VNETCT_TEST_ERRORS(X)             \
    X(Timeout, "deadline passed")         \
    X(NoSuchFile, "the file does not exist")
VNETCT_DEFINE_ERRC(TestErrc, VNETCT_TEST_ERRORS)

#define VNETCT_TEST_WIRE_TYPES(X) \
    X(Hello, 7, "hello")          \
    X(Bye, 9, "bye")
VNETCT_DEFINE_VALUED_ENUM(WireType, std::uint16_t, VNETCT_TEST_WIRE_TYPES)

TEST(EnumStrings_test, ToStringIsTheTextAndNameOfTheEnumeratorName) {
    EXPECT_EQ(to_string(TestErrc::Timeout), "deadline passed");
    EXPECT_EQ(name_of(TestErrc::Timeout), "Timeout");
    EXPECT_EQ(to_string(TestErrc::NoSuchFile), "the file does not exist");
    EXPECT_EQ(name_of(TestErrc::NoSuchFile), "NoSuchFile");
}

TEST(EnumStrings_test, EveryEntryOfTheListGetsBothSpellings) {
#define VNETCT_TEST_CHECK(name, text)                 \
    EXPECT_EQ(to_string(TestErrc::name), text);       \
    EXPECT_EQ(name_of(TestErrc::name), #name);
    VNETCT_TEST_ERRORS(VNETCT_TEST_CHECK)
#undef VNETCT_TEST_CHECK
}

TEST(EnumStrings_test, ValuedEnumKeepsItsNumbersAndBothSpellings) {
    static_assert(sizeof(WireType) == sizeof(std::uint16_t));
    EXPECT_EQ(static_cast<int>(WireType::Hello), 7);
    EXPECT_EQ(static_cast<int>(WireType::Bye), 9);
    EXPECT_EQ(to_string(WireType::Bye), "bye");
    EXPECT_EQ(name_of(WireType::Bye), "Bye");
    EXPECT_EQ(to_string(static_cast<WireType>(8)), "unknown");
    EXPECT_EQ(name_of(static_cast<WireType>(8)), "Unknown");
}

TEST(EnumStrings_test, ErrorMessageIsTheSentenceThenTheDetail) {
    EXPECT_EQ((Error<TestErrc>{TestErrc::Timeout, "waited 3 s for RESUME"}.message()),
              "deadline passed: waited 3 s for RESUME");
    EXPECT_EQ((Error<TestErrc>{TestErrc::NoSuchFile, ""}.message()), "the file does not exist");
}

static_assert(name_of(TestErrc::Timeout) == std::string_view{"Timeout"}, "usable at compile time");

}  // namespace vnetct::test
