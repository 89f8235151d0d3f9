// Module entry: builds `exports` from the registry (exports.ops.* for kernel-level functions, exports.* for
// the rest), each wrapped so that C++ exceptions become JS exceptions.
#include <napi.h>

#include <exception>

#include "core/error.h"
#include "registry.h"

namespace dbcore::js {

std::vector<Registered>& registry() {
  static std::vector<Registered> r;
  return r;
}

std::vector<std::pair<const char*, ClassDefiner>>& class_registry() {
  static std::vector<std::pair<const char*, ClassDefiner>> r;
  return r;
}

Napi::Error js_error(Napi::Env env, const std::string& code, const std::string& message) {
  bool bad_argument = code == "EINVAL" || code == "ESHAPE" || code == "EDTYPE";
  Napi::Error err = bad_argument ? Napi::TypeError::New(env, message) : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Error js_error_from_current_exception(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error& e) {
    return e;
  } catch (const Error& e) {
    return js_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return js_error(env, "ENOMEM", "out of memory");
  } catch (const std::exception& e) {
    return js_error(env, "EINTERNAL", e.what());
  }
}

Napi::Object init(Napi::Env env, Napi::Object exports);

namespace {

Napi::Value guarded_call(const Napi::CallbackInfo& info) {
  auto fn = reinterpret_cast<Fn>(info.Data());
  try {
    return fn(info);
  } catch (...) {
    throw js_error_from_current_exception(info.Env());
  }
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  Napi::Object ops = Napi::Object::New(env);
  for (const Registered& r : registry()) {
    Napi::Function f = Napi::Function::New(env, guarded_call, r.name, reinterpret_cast<void*>(r.fn));
    (r.is_op ? ops : exports).Set(r.name, f);
  }
  exports.Set("ops", ops);
  for (const auto& [name, define] : class_registry()) exports.Set(name, define(env));
  return exports;
}

}  // namespace dbcore::js

static Napi::Object InitDbcore(Napi::Env env, Napi::Object exports) { return dbcore::js::init(env, exports); }

NODE_API_MODULE(dbcore, InitDbcore)
