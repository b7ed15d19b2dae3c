// first_invalid_utf8 (base/utf8.h): well-formed text of every sequence length passes; each kind
// of malformed sequence is found at its first byte.
#include "base/utf8.h"

#include <gtest/gtest.h>

namespace rf {
namespace {

TEST(Utf8, WellFormedTextOfEveryLengthPasses) {
  EXPECT_EQ(first_invalid_utf8(""), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("plain ascii"), std::string::npos);
  // 2, 3 and 4 bytes: é, €, 𝄞; and the largest code point, U+10FFFF.
  EXPECT_EQ(first_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x84\x9E \xF4\x8F\xBF\xBF"),
            std::string::npos);
}

TEST(Utf8, EachKindOfMalformedSequenceIsFoundAtItsFirstByte) {
  EXPECT_EQ(first_invalid_utf8("ab\xFF"), 2u);  // never in UTF-8
  EXPECT_EQ(first_invalid_utf8("ab\x80"
                               "cd"),
            2u);                                // a continuation without a lead
  EXPECT_EQ(first_invalid_utf8("ab\xC3"), 2u);  // cut short at the end
  EXPECT_EQ(first_invalid_utf8("ab\xE2\x82"
                               "c"),
            2u);                                           // cut short before ASCII
  EXPECT_EQ(first_invalid_utf8("a\xC0\xAF"), 1u);          // overlong '/'
  EXPECT_EQ(first_invalid_utf8("a\xE0\x80\xAF"), 1u);      // overlong, 3 bytes
  EXPECT_EQ(first_invalid_utf8("a\xED\xA0\x80"), 1u);      // a surrogate, U+D800
  EXPECT_EQ(first_invalid_utf8("a\xF4\x90\x80\x80"), 1u);  // past U+10FFFF
  EXPECT_EQ(first_invalid_utf8("\xC3\xA9\xC3"), 2u);       // after a valid sequence
}

}  // namespace
}  // namespace rf

namespace rf {
namespace {

// Where prepare cuts a block without a newline: before the last character, whole or cut short.
TEST(Utf8, TheLastCharacterStartsAtItsLeadByte) {
  EXPECT_EQ(last_character_start(""), 0u);
  EXPECT_EQ(last_character_start("ab"), 1u);
  EXPECT_EQ(last_character_start("a\xE2\x82\xAC"), 1u);  // a whole euro sign
  EXPECT_EQ(last_character_start("a\xE2\x82"), 1u);      // one cut short
  EXPECT_EQ(last_character_start("\xE2\x82\xAC\xE2"), 3u);
  EXPECT_EQ(last_character_start("ab\xF0\x9F\x98\x80"), 2u);  // four bytes
  EXPECT_TRUE(is_utf8_continuation('\x80'));
  EXPECT_FALSE(is_utf8_continuation('\xE2'));
  EXPECT_FALSE(is_utf8_continuation('a'));
}

}  // namespace
}  // namespace rf
