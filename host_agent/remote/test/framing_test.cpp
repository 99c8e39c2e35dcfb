// The stream's framing on the daemon's side (RequestReader over the host agent
// library's take_lines) and the base64 of channel data.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vnetct/remote/base64.hpp"
#include "vnetct/remote/request_reader.hpp"

using namespace vnetct::remote;

namespace {

std::vector<std::string> read_all(RequestReader& reader, const std::vector<std::string>& chunks) {
    std::vector<RemoteResult<nlohmann::json>> out;
    for (const auto& chunk : chunks) {
        reader.append(chunk, out);
    }
    std::vector<std::string> lines;
    for (const auto& item : out) {
        lines.push_back(item ? item->dump() : std::string(name_of(item.error().code)));
    }
    return lines;
}

}  // namespace

TEST(RequestReader_test, LinesSplitAnywhereAreReadWhole) {
    RequestReader reader(1024);
    EXPECT_EQ(read_all(reader, {"{\"a\"", ":1}\n{\"b\":2}\n\n{\"c\"", ":3}\n"}),
              (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "{\"c\":3}"}));
    EXPECT_EQ(reader.buffered(), 0U);
}

TEST(RequestReader_test, NoJsonIsMalformedAndTheNextLineIsRead) {
    RequestReader reader(1024);
    EXPECT_EQ(read_all(reader, {"not json\n{\"ok\":1}\n"}), (std::vector<std::string>{"Malformed", "{\"ok\":1}"}));
}

TEST(RequestReader_test, DeepNestingIsMalformed) {
    RequestReader reader(4096);
    EXPECT_EQ(read_all(reader, {std::string(1000, '[') + std::string(1000, ']') + "\n"}),
              (std::vector<std::string>{"Malformed"}));
}

TEST(RequestReader_test, AWholeOversizedLineIsReportedAndWhatFollowsIsRead) {
    RequestReader reader(16);
    EXPECT_EQ(read_all(reader, {"{\"x\":\"" + std::string(100, 'y') + "\"}\n{\"after\":1}\n"}),
              (std::vector<std::string>{"Oversized", "{\"after\":1}"}));
}

TEST(RequestReader_test, AnOversizedLineArrivingInPiecesIsReportedOnceAndDropped) {
    RequestReader reader(16);
    EXPECT_EQ(read_all(reader, {"{\"x\":\"" + std::string(20, 'y'), std::string(50, 'y'), std::string(50, 'y') + "\"}",
                                "\n{\"after\":1}\n"}),
              (std::vector<std::string>{"Oversized", "{\"after\":1}"}));
}

TEST(Base64_test, EveryByteValueRoundTrips) {
    std::string bytes;
    for (int i = 0; i < 256; ++i) {
        bytes += static_cast<char>(i);
    }
    for (std::size_t length = 0; length <= bytes.size(); length += 85) {
        const std::string part = bytes.substr(0, length);
        EXPECT_EQ(base64_decode(base64_encode(part)), part) << length;
    }
    EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
    EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
}

TEST(Base64_test, NonCanonicalTextIsRefused) {
    EXPECT_EQ(base64_decode("Zm9vYg="), std::nullopt) << "length not a multiple of 4";
    EXPECT_EQ(base64_decode("Zm9v!g=="), std::nullopt) << "outside the alphabet";
    EXPECT_EQ(base64_decode("Zm=vYmE="), std::nullopt) << "padding inside";
    EXPECT_EQ(base64_decode("Zm9vYh=="), std::nullopt) << "bits set under the padding";
    EXPECT_EQ(base64_decode("===="), std::nullopt);
    EXPECT_EQ(base64_decode(""), std::string());
}
