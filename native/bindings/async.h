// Running long native work off the event loop. The caller prepares everything that touches N-API on the
// main thread (argument checks, output buffers), then hands a pure C++ closure to run_async(), which runs it
// on the libuv thread pool and resolves the returned promise with `result` (or rejects with the error).
// `keep_alive` holds references to the JS values whose memory the closure reads or writes, so they cannot be
// collected while the work runs.
#pragma once
#include <napi.h>

#include <functional>
#include <vector>

namespace dbcore::js {

Napi::Promise run_async(Napi::Env env, std::function<void()> work, Napi::Value result,
                        const std::vector<Napi::Value>& keep_alive);

// As above, but the resolved value is built by `finish` on the main thread after the work is done (for results
// whose size is known only then). `cleanup`, when given, runs on the main thread after success or failure alike.
Napi::Promise run_async(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish,
                        const std::vector<Napi::Value>& keep_alive, std::function<void()> cleanup = nullptr);

}  // namespace dbcore::js
