// Base64 (RFC 4648, standard alphabet, padded): how channel data and file
// contents travel inside the JSON lines of the host agent's stream.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vnetct::remote {

[[nodiscard]] std::string base64_encode(std::string_view bytes);
// The bytes, or nullopt for text that is not canonical padded base64 (a
// character outside the alphabet, a length not a multiple of 4, padding
// anywhere but at the end, or non-zero bits in the padding).
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);
// The decoded size of `encoded_length` characters of padded base64 at most.
[[nodiscard]] constexpr std::size_t base64_decoded_bound(std::size_t encoded_length) {
    return encoded_length / 4 * 3;
}

}  // namespace vnetct::remote
