#include "async.h"

#include <exception>
#include <memory>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "registry.h"

namespace dbcore::js {

namespace {

class ClosureWorker : public Napi::AsyncWorker {
 public:
  ClosureWorker(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                const std::vector<Napi::Value>& keep_alive, std::function<void()> cleanup)
      : Napi::AsyncWorker(env, "dbcore:async"),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        finish_(std::move(finish)),
        cleanup_(std::move(cleanup)) {
    for (const Napi::Value& v : keep_alive) kept_.push_back(Napi::Persistent(v));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      use_num_threads_here();
      work_();
    } catch (const Error& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "EINTERNAL";
      SetError(e.what());
    }
  }

  void OnOK() override {
    if (cleanup_) cleanup_();
    try {
      deferred_.Resolve(finish_(Env()));
    } catch (...) {
      deferred_.Reject(js_error_from_current_exception(Env()).Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    if (cleanup_) cleanup_();
    deferred_.Reject(js_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> finish_;
  std::function<void()> cleanup_;
  std::vector<Napi::Reference<Napi::Value>> kept_;
  std::string code_ = "EINTERNAL";
};

}  // namespace

Napi::Promise run_async(Napi::Env env, std::function<void()> work, Napi::Value result,
                        const std::vector<Napi::Value>& keep_alive) {
  auto ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(result));
  return run_async(env, std::move(work), [ref](Napi::Env) { return ref->Value(); }, keep_alive);
}

Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                        const std::vector<Napi::Value>& keep_alive, std::function<void()> cleanup) {
  auto* worker = new ClosureWorker(env, std::move(work), std::move(finish), keep_alive, std::move(cleanup));
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

}  // namespace dbcore::js
