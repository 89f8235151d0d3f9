// Errors raised by the native core. Library code never calls exit(): it throws dbcore::Error,
// which the bindings turn into a JS EngineError carrying `code`.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

namespace dbcore {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// printf-style formatting into a std::string.
template <typename... Args>
std::string format(const char* fmt, Args... args) {
  int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(n > 0 ? n : 0, '\0');
  if (n > 0) std::snprintf(&s[0], n + 1, fmt, args...);
  return s;
}
inline std::string format(const char* fmt) { return fmt; }

}  // namespace dbcore

// Throws dbcore::Error(code, message) when `cond` is false. Codes are short upper-case strings
// ("EINVAL" for bad arguments, "ESHAPE" for shape mismatches, "EDTYPE", "ENOMEM", "ECUDA", …).
#define DBCORE_CHECK(cond, code, ...)                             \
  do {                                                            \
    if (!(cond)) throw ::dbcore::Error((code), ::dbcore::format(__VA_ARGS__)); \
  } while (0)
