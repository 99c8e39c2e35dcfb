#include "vnetct/livetap/codec.hpp"

#include <net/if.h>

#include <array>
#include <cstdio>

namespace vnetct::livetap {
namespace {

constexpr std::array<std::uint32_t, 256> make_crc_table() {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t n = 0; n < 256; ++n) {
        std::uint32_t c = n;
        for (int k = 0; k < 8; ++k) {
            c = (c & 1U) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        }
        table[n] = c;
    }
    return table;
}
constexpr auto kCrcTable = make_crc_table();

class Writer {
  public:
    void u8(std::uint8_t value) { m_bytes.push_back(value); }
    void u16(std::uint16_t value) { little_endian(value, 2); }
    void u32(std::uint32_t value) { little_endian(value, 4); }
    void u64(std::uint64_t value) { little_endian(value, 8); }
    void bytes(std::string_view text) { m_bytes.insert(m_bytes.end(), text.begin(), text.end()); }
    std::vector<std::uint8_t> take() { return std::move(m_bytes); }

  private:
    void little_endian(std::uint64_t value, int size) {
        for (int i = 0; i < size; ++i) {
            m_bytes.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
        }
    }
    std::vector<std::uint8_t> m_bytes;
};

// Reads fields in order; the first short read names its field.
class Reader {
  public:
    explicit Reader(std::span<const std::uint8_t> bytes) : m_bytes(bytes) {}
    bool u8(std::uint8_t& out, const char* field) { return read(out, 1, field); }
    bool u16(std::uint16_t& out, const char* field) { return read(out, 2, field); }
    bool u32(std::uint32_t& out, const char* field) { return read(out, 4, field); }
    bool u64(std::uint64_t& out, const char* field) { return read(out, 8, field); }
    bool text(std::string& out, std::size_t size, const char* field) {
        if (!need(size, field)) {
            return false;
        }
        out.assign(reinterpret_cast<const char*>(m_bytes.data() + m_offset), size);
        m_offset += size;
        return true;
    }
    [[nodiscard]] std::size_t remaining() const { return m_bytes.size() - m_offset; }
    [[nodiscard]] const std::string& missing() const { return m_missing; }

  private:
    bool need(std::size_t size, const char* field) {
        if (remaining() < size) {
            m_missing = std::string("payload ends inside ") + field;
            return false;
        }
        return true;
    }
    template <typename T>
    bool read(T& out, int size, const char* field) {
        if (!need(static_cast<std::size_t>(size), field)) {
            return false;
        }
        std::uint64_t value = 0;
        for (int i = 0; i < size; ++i) {
            value |= static_cast<std::uint64_t>(m_bytes[m_offset + static_cast<std::size_t>(i)]) << (8 * i);
        }
        out = static_cast<T>(value);
        m_offset += static_cast<std::size_t>(size);
        return true;
    }
    std::span<const std::uint8_t> m_bytes;
    std::size_t m_offset = 0;
    std::string m_missing;
};

std::uint32_t read_u32(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint32_t>(bytes[at]) | static_cast<std::uint32_t>(bytes[at + 1]) << 8 |
           static_cast<std::uint32_t>(bytes[at + 2]) << 16 | static_cast<std::uint32_t>(bytes[at + 3]) << 24;
}
std::uint16_t read_u16(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint16_t>(bytes[at] | bytes[at + 1] << 8);
}

bool known_type(std::uint16_t type) {
    return type >= static_cast<std::uint16_t>(MessageType::Offer) &&
           type <= static_cast<std::uint16_t>(MessageType::Ready);
}

bool known_errc(std::uint16_t code) {
#define VNETCT_LIVETAP_COUNT(name, sentence) +1
    constexpr int count = 0 VNETCT_LIVETAP_ERRORS(VNETCT_LIVETAP_COUNT);
#undef VNETCT_LIVETAP_COUNT
    return code < count;
}

}  // namespace

std::uint32_t crc32(std::span<const std::uint8_t> bytes, std::uint32_t crc) {
    crc = ~crc;
    for (std::uint8_t byte : bytes) {
        crc = kCrcTable[(crc ^ byte) & 0xFFU] ^ (crc >> 8);
    }
    return ~crc;
}

LivetapResult<std::vector<std::uint8_t>> encode_frame(MessageType type, std::span<const std::uint8_t> payload) {
    if (payload.size() > max_message_bytes - frame_header_bytes) {
        return fail(LivetapErrc::Oversized, "payload of " + std::to_string(payload.size()) + " bytes, at most " +
                                                std::to_string(max_message_bytes - frame_header_bytes));
    }
    Writer writer;
    writer.u32(frame_magic);
    writer.u16(protocol_version);
    writer.u16(static_cast<std::uint16_t>(type));
    writer.u32(static_cast<std::uint32_t>(payload.size()));
    auto bytes = writer.take();
    const std::uint32_t crc = crc32(payload, crc32(bytes));
    for (int i = 0; i < 4; ++i) {
        bytes.push_back(static_cast<std::uint8_t>(crc >> (8 * i)));
    }
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    return bytes;
}

LivetapResult<Frame> decode_frame(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < frame_header_bytes) {
        return fail(LivetapErrc::Truncated, std::to_string(bytes.size()) + " bytes, the header alone is " +
                                                std::to_string(frame_header_bytes));
    }
    if (const std::uint32_t magic = read_u32(bytes, 0); magic != frame_magic) {
        return fail(LivetapErrc::BadMagic, "magic 0x" + [&] {
            char text[9];
            std::snprintf(text, sizeof text, "%08x", magic);
            return std::string(text);
        }());
    }
    if (const std::uint16_t version = read_u16(bytes, 4); version != protocol_version) {
        return fail(LivetapErrc::UnsupportedVersion, "version " + std::to_string(version) + ", this side speaks " +
                                                         std::to_string(protocol_version));
    }
    const std::uint16_t type = read_u16(bytes, 6);
    const std::uint32_t length = read_u32(bytes, 8);
    if (length > max_message_bytes - frame_header_bytes) {
        return fail(LivetapErrc::Oversized, "declared payload of " + std::to_string(length) + " bytes, at most " +
                                                std::to_string(max_message_bytes - frame_header_bytes));
    }
    const std::size_t total = frame_header_bytes + length;
    if (bytes.size() < total) {
        return fail(LivetapErrc::Truncated,
                    std::to_string(bytes.size()) + " bytes, the header declares " + std::to_string(total));
    }
    if (bytes.size() > total) {
        return fail(LivetapErrc::Malformed, std::to_string(bytes.size() - total) +
                                                " bytes after the declared end of the message");
    }
    const auto payload = bytes.subspan(frame_header_bytes);
    const std::uint32_t expected = crc32(payload, crc32(bytes.first(12)));
    if (const std::uint32_t stated = read_u32(bytes, 12); stated != expected) {
        return fail(LivetapErrc::ChecksumMismatch,
                    "stated crc32 " + std::to_string(stated) + ", computed " + std::to_string(expected));
    }
    if (!known_type(type)) {
        return fail(LivetapErrc::Malformed, "unknown message type " + std::to_string(type));
    }
    return Frame{static_cast<MessageType>(type), std::vector<std::uint8_t>(payload.begin(), payload.end())};
}

LivetapResult<std::vector<std::uint8_t>> encode_state(const TapState& state) {
    if (state.name.empty() || state.name.size() >= IFNAMSIZ) {
        return fail(LivetapErrc::InvalidArgument,
                    "interface name '" + state.name + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " bytes");
    }
    if (state.queue_count == 0 || state.queue_count > max_queues) {
        return fail(LivetapErrc::InvalidArgument,
                    "queue count " + std::to_string(state.queue_count) + " must be 1.." + std::to_string(max_queues));
    }
    Writer writer;
    writer.u32(state.tun_flags);
    writer.u32(static_cast<std::uint32_t>(state.ifindex));
    writer.u64(state.netns_inode);
    writer.u8(static_cast<std::uint8_t>(state.name.size()));
    writer.bytes(state.name);
    writer.u32(static_cast<std::uint32_t>(state.vnet_hdr_size));
    writer.u8(state.vnet_le ? 1 : 0);
    writer.u32(static_cast<std::uint32_t>(state.sndbuf));
    writer.u32(state.offloads);
    writer.u16(state.queue_count);
    return writer.take();
}

LivetapResult<TapState> decode_state(std::span<const std::uint8_t> payload) {
    Reader reader(payload);
    TapState state;
    std::uint32_t ifindex = 0;
    std::uint32_t vnet_hdr_size = 0;
    std::uint32_t sndbuf = 0;
    std::uint8_t name_length = 0;
    std::uint8_t vnet_le = 0;
    const bool complete =
        reader.u32(state.tun_flags, "tun_flags") && reader.u32(ifindex, "ifindex") &&
        reader.u64(state.netns_inode, "netns_inode") && reader.u8(name_length, "name_len") &&
        reader.text(state.name, name_length, "name") && reader.u32(vnet_hdr_size, "vnet_hdr_size") &&
        reader.u8(vnet_le, "vnet_le") && reader.u32(sndbuf, "sndbuf") && reader.u32(state.offloads, "offloads") &&
        reader.u16(state.queue_count, "queue_count");
    if (!complete) {
        return fail(LivetapErrc::Malformed, "state: " + reader.missing());
    }
    if (reader.remaining() != 0) {
        return fail(LivetapErrc::Malformed, "state: " + std::to_string(reader.remaining()) + " bytes after queue_count");
    }
    if (name_length == 0 || name_length >= IFNAMSIZ || state.name.find('\0') != std::string::npos) {
        return fail(LivetapErrc::Malformed, "state: interface name of " + std::to_string(name_length) + " bytes");
    }
    if (vnet_le > 1) {
        return fail(LivetapErrc::Malformed, "state: vnet_le " + std::to_string(vnet_le) + " is not 0 or 1");
    }
    if (state.queue_count == 0 || state.queue_count > max_queues) {
        return fail(LivetapErrc::Malformed, "state: queue count " + std::to_string(state.queue_count) +
                                                " is not 1.." + std::to_string(max_queues));
    }
    state.ifindex = static_cast<std::int32_t>(ifindex);
    state.vnet_hdr_size = static_cast<std::int32_t>(vnet_hdr_size);
    state.vnet_le = vnet_le == 1;
    state.sndbuf = static_cast<std::int32_t>(sndbuf);
    return state;
}

std::vector<std::uint8_t> encode_rejection(const Rejection& rejection) {
    const std::string_view reason = std::string_view(rejection.reason).substr(0, max_reason_bytes);
    Writer writer;
    writer.u16(static_cast<std::uint16_t>(rejection.code));
    writer.u16(static_cast<std::uint16_t>(reason.size()));
    writer.bytes(reason);
    return writer.take();
}

LivetapResult<Rejection> decode_rejection(std::span<const std::uint8_t> payload) {
    Reader reader(payload);
    std::uint16_t code = 0;
    std::uint16_t length = 0;
    Rejection rejection;
    if (!(reader.u16(code, "code") && reader.u16(length, "reason_len") &&
          reader.text(rejection.reason, length, "reason"))) {
        return fail(LivetapErrc::Malformed, "reject: " + reader.missing());
    }
    if (reader.remaining() != 0) {
        return fail(LivetapErrc::Malformed, "reject: " + std::to_string(reader.remaining()) + " bytes after reason");
    }
    if (!known_errc(code) || length > max_reason_bytes) {
        return fail(LivetapErrc::Malformed, "reject: code " + std::to_string(code) + ", reason of " +
                                                std::to_string(length) + " bytes");
    }
    rejection.code = static_cast<LivetapErrc>(code);
    return rejection;
}

}  // namespace vnetct::livetap
