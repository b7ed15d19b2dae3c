// UTF-8 validation for text handed to a SentencePiece model, which reads UTF-8 and would
// otherwise replace what is not with U+FFFD without a word.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rf {

// The offset of the first byte of `text` that does not start a well-formed UTF-8 sequence
// (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF), or std::string::npos.
// (A view: prepare checks 16 MiB blocks of a file without copying them.)
inline size_t first_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint32_t code = 0, smallest = 0;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, code = lead & 0x1Fu, smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code = lead & 0x0Fu, smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code = lead & 0x07u, smallest = 0x10000;
    } else {
      return i;  // a continuation byte without a lead, or 0xF8..0xFF
    }
    if (text.size() - i < length) return i;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code = (code << 6) | (next & 0x3Fu);
    }
    if (code < smallest || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return i;
    i += length;
  }
  return std::string::npos;
}

// Whether `byte` continues a UTF-8 sequence (10xxxxxx) rather than starting a character.
inline bool is_utf8_continuation(char byte) {
  return (static_cast<unsigned char>(byte) & 0xC0) == 0x80;
}

// The offset where the last character of `text` starts (its lead byte; 0 for empty text): the
// place to cut a block of UTF-8 read from a longer text so that no character is split, the last
// one (which the block's end may have cut) going with the next block.
inline size_t last_character_start(std::string_view text) {
  size_t i = text.size();
  while (i > 0 && is_utf8_continuation(text[i - 1])) --i;
  return i > 0 ? i - 1 : 0;
}

}  // namespace rf
