// Registry of the functions the addon exports. A binding file defines its functions with
//   DBCORE_OP(name) { … return value; }            → addon.ops.name(…)     (kernel-level, for tests)
//   DBCORE_EXPORT(name) { … }                      → addon.name(…)         (top level)
// Every registered function runs inside guard(): a dbcore::Error or std::exception becomes a JS exception
// (TypeError for bad arguments) with `code` set, so a bad call never crashes the process.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace dbcore::js {

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

struct Registered {
  const char* name;
  Fn fn;
  bool is_op;
};
std::vector<Registered>& registry();

struct Registration {
  Registration(const char* name, Fn fn, bool is_op) { registry().push_back({name, fn, is_op}); }
};

// Classes (Napi::ObjectWrap) register a function that defines them: exports.<name> = define(env).
using ClassDefiner = Napi::Function (*)(Napi::Env);
std::vector<std::pair<const char*, ClassDefiner>>& class_registry();
struct ClassRegistration {
  ClassRegistration(const char* name, ClassDefiner define) { class_registry().push_back({name, define}); }
};

// Converts the in-flight C++ exception into a JS error value with `code` (call inside a catch block).
Napi::Error js_error_from_current_exception(Napi::Env env);
// Builds a JS error (TypeError for EINVAL/ESHAPE/EDTYPE) from a code and message.
Napi::Error js_error(Napi::Env env, const std::string& code, const std::string& message);

}  // namespace dbcore::js

#define DBCORE_REGISTER_(name, is_op)                                                   \
  static Napi::Value dbcore_fn_##name(const Napi::CallbackInfo& info);                  \
  static ::dbcore::js::Registration dbcore_reg_##name(#name, dbcore_fn_##name, is_op); \
  static Napi::Value dbcore_fn_##name(const Napi::CallbackInfo& info)

#define DBCORE_OP(name) DBCORE_REGISTER_(name, true)
#define DBCORE_EXPORT(name) DBCORE_REGISTER_(name, false)
