#include "trainer/tensorboard_events.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "base/crc32c.h"
#include "base/error.h"

namespace fs = std::filesystem;

namespace rf {
namespace {

// --- protobuf wire format: the subset the Event, Summary and SessionLog fields use ------------

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Field numbers of tensorboard/compat/proto/event.proto and summary.proto.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5,
                   kEventSessionLog = 7;
constexpr uint32_t kSummaryValue = 1, kValueTag = 1, kValueSimpleValue = 2;
constexpr uint32_t kSessionLogStatus = 1, kSessionLogStart = 1;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_little_endian(std::string& out, uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
}

void put_key(std::string& out, uint32_t field, WireType type) {
  put_varint(out, (uint64_t{field} << 3) | type);
}

// proto3 leaves out scalar fields at their default (zero), so the bytes equal protobuf's own.
void put_int64_field(std::string& out, uint32_t field, int64_t v) {
  if (v == 0) return;
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));  // negative: ten bytes of two's complement
}

void put_double_field(std::string& out, uint32_t field, double v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  if (bits == 0) return;
  put_key(out, field, kFixed64);
  put_little_endian(out, bits, 8);
}

// Always written: simple_value is a member of a oneof, which is present even when zero.
void put_float_field(std::string& out, uint32_t field, float v) {
  uint32_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, kFixed32);
  put_little_endian(out, bits, 4);
}

void put_bytes_field(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_double_field(event, kEventWallTime, wall_time);
  put_int64_field(event, kEventStep, step);
  return event;
}

double seconds_since_epoch() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

std::string frame_record(const std::string& data) {
  std::string length;
  put_little_endian(length, data.size(), 8);
  std::string framed = length;
  const auto crc_of = [](const std::string& s) {
    return masked_crc32c(crc32c(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  };
  put_little_endian(framed, crc_of(length), 4);
  framed += data;
  put_little_endian(framed, crc_of(data), 4);
  return framed;
}

std::string file_version_event(double wall_time) {
  std::string event = event_header(wall_time, 0);
  put_bytes_field(event, kEventFileVersion, "brain.Event:2");
  return event;
}

std::string scalars_event(double wall_time, int64_t step, const std::vector<TaggedScalar>& values) {
  std::string summary;
  for (const TaggedScalar& v : values) {
    std::string value;
    put_bytes_field(value, kValueTag, v.tag);
    put_float_field(value, kValueSimpleValue, v.value);
    put_bytes_field(summary, kSummaryValue, value);
  }
  std::string event = event_header(wall_time, step);
  put_bytes_field(event, kEventSummary, summary);
  return event;
}

std::string session_start_event(double wall_time, int64_t step) {
  std::string session_log;
  put_key(session_log, kSessionLogStatus, kVarint);
  put_varint(session_log, kSessionLogStart);
  std::string event = event_header(wall_time, step);
  put_bytes_field(event, kEventSessionLog, session_log);
  return event;
}

std::string event_file_name(int64_t unix_time, const std::string& host) {
  return "events.out.tfevents." + std::to_string(unix_time) + "." + host;
}

TensorBoardWriter::TensorBoardWriter(const std::string& path)
    : file_(std::fopen(path.c_str(), "wb")), path_(path) {
  if (!file_) fail("cannot create TensorBoard event file '", path, "': ", std::strerror(errno));
  write_event(file_version_event(seconds_since_epoch()));
}

TensorBoardWriter TensorBoardWriter::create_in(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("cannot create the TensorBoard folder '", dir, "': ", ec.message());
  const std::string name =
      event_file_name(static_cast<int64_t>(seconds_since_epoch()), host_name());
  fs::path path = fs::path(dir) / name;
  for (int suffix = 1; fs::exists(path); ++suffix)
    path = fs::path(dir) / (name + "." + std::to_string(suffix));
  return TensorBoardWriter(path.string());
}

void TensorBoardWriter::write_scalars(int64_t step, const std::vector<TaggedScalar>& values) {
  write_event(scalars_event(seconds_since_epoch(), step, values));
}

void TensorBoardWriter::write_session_start(int64_t step) {
  write_event(session_start_event(seconds_since_epoch(), step));
}

void TensorBoardWriter::write_event(const std::string& event) {
  if (!file_) return;
  const std::string record = frame_record(event);
  const bool written = std::fwrite(record.data(), 1, record.size(), file_.get()) == record.size();
  if (written && std::fflush(file_.get()) == 0) return;
  std::cerr << "warning: cannot write TensorBoard event file '" << path_
            << "': " << std::strerror(errno) << "; TensorBoard logging stops here" << std::endl;
  file_.reset();
}

}  // namespace rf
