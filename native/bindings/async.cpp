#include "async.h"

#include <exception>
#include <string>

#include "core/error.h"
#include "registry.h"

namespace dbcore::js {

namespace {

class ClosureWorker : public Napi::AsyncWorker {
 public:
  ClosureWorker(Napi::Env env, std::function<void()> work, Napi::Value result,
                const std::vector<Napi::Value>& keep_alive)
      : Napi::AsyncWorker(env, "dbcore:async"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)) {
    result_ = Napi::Persistent(result);
    for (const Napi::Value& v : keep_alive) kept_.push_back(Napi::Persistent(v));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "EINTERNAL";
      SetError(e.what());
    }
  }

  void OnOK() override { deferred_.Resolve(result_.Value()); }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(js_error(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  Napi::Reference<Napi::Value> result_;
  std::vector<Napi::Reference<Napi::Value>> kept_;
  std::string code_ = "EINTERNAL";
};

}  // namespace

Napi::Promise run_async(Napi::Env env, std::function<void()> work, Napi::Value result,
                        const std::vector<Napi::Value>& keep_alive) {
  auto* worker = new ClosureWorker(env, std::move(work), result, keep_alive);
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

}  // namespace dbcore::js
