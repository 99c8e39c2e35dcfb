// Writes the seed inputs of the binary fuzz targets, made by our own encoders:
//   make_seeds <fuzz/corpus>
// (livetap_codec: a frame of each type; config_space: NIC and bridge images
// with and without a group id). The text targets' seeds are written by hand.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vnetct/groupid/groupid.hpp"
#include "vnetct/livetap/codec.hpp"

namespace {

void write(const std::filesystem::path& file, const std::vector<std::uint8_t>& bytes) {
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::uint8_t> frame(vnetct::livetap::MessageType type, const std::vector<std::uint8_t>& payload) {
    auto encoded = vnetct::livetap::encode_frame(type, payload);
    return encoded ? *encoded : std::vector<std::uint8_t>{};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_seeds <corpus dir>\n");
        return 2;
    }
    using namespace vnetct::livetap;
    const std::filesystem::path corpus = argv[1];
    const auto codec = corpus / "livetap_codec_fuzz";
    TapState state;
    state.name = "vt0";
    state.tun_flags = 0x5002;  // IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
    state.ifindex = 4;
    state.netns_inode = 4026531840;
    state.vnet_hdr_size = 12;
    state.vnet_le = true;
    state.sndbuf = 0x7fffffff;
    state.offloads = 0x1f;
    state.queue_count = 2;
    write(codec / "offer", frame(MessageType::Offer, encode_state(state).value()));
    write(codec / "reject", frame(MessageType::Reject, encode_rejection({LivetapErrc::StateMismatch, "ifindex 4, fd 5"})));
    write(codec / "no-backend", frame(MessageType::NoBackend, {'o', 'f', 'f'}));
    for (const MessageType type : {MessageType::Accept, MessageType::Commit, MessageType::Ready}) {
        write(codec / std::string(to_string(type)), frame(type, {}));
    }
    write(codec / "offer-payload", encode_state(state).value());

    const auto config = corpus / "config_space_fuzz";
    write(config / "nic-group", vnetct::groupid::encode_nic_config(0x0123456789abcdefULL));
    write(config / "nic-plain", vnetct::groupid::encode_nic_config(std::nullopt));
    write(config / "bridge-group", vnetct::groupid::encode_bridge_config(42));
    write(config / "bridge-plain", vnetct::groupid::encode_bridge_config(std::nullopt));
    return 0;
}
