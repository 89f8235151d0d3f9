// What a network's layers need while running: the backend, the parameters (and gradients), and two arenas —
// `keep` for activations that backward reads, `work` for temporaries freed with mark/release.
#pragma once
#include <functional>
#include <string>

#include "core/arena.h"
#include "cpu/conv2d.h"
#include "grad_sink.h"
#include "ops/ops.h"
#include "params.h"

namespace dbcore {

// Called with (name, data, shape) for a network's intermediate results (dbcore check compares them).
using ActivationHook = std::function<void(const std::string&, const float*, const Shape&)>;

struct Run {
  ops::Context ctx;
  ParamStore* store = nullptr;
  Arena* keep = nullptr;
  Arena* work = nullptr;
  bool training = false;       // keep what backward needs
  bool checkpointing = false;  // blocks keep only their input and recompute the rest in backward
  // Largest im2col workspace (floats) conv_forward may take; a convolution needing more runs in bands of output
  // rows. 0: no limit (one band).
  int64_t conv_workspace_limit = 0;
  GradientSink* sink = nullptr;  // where parameter gradients go (null: the store's fp32 block)

  float* p(int64_t offset) const { return store->param(offset); }
  float* g(int64_t offset) const { return sink ? sink->grad(offset) : store->grad(offset); }
  // Brackets the backward of a parameter range (grad_sink.h); nothing without a sink.
  void begin_params(const ParamRange& range) const {
    if (sink) sink->begin(*work, range);
  }
  void end_params() const {
    if (sink) sink->end();
  }
  // Arena for a block's saved activations: `keep` while training without checkpointing, else `work`.
  Arena& acts_arena() const { return training && !checkpointing ? *keep : *work; }
};

// Offsets of a layer's weight and (optional, -1 when absent) bias.
struct WB {
  int64_t w = -1, b = -1;
};

WB declare_linear(ParamTable& t, const std::string& name, int64_t out, int64_t in, bool bias = true);
WB declare_conv(ParamTable& t, const std::string& name, int64_t out, int64_t in, int64_t k);
WB declare_norm(ParamTable& t, const std::string& name, int64_t channels);

// Layer calls with the conv workspace taken from run.work, and null for an absent bias.
void conv_forward(const Run& r, float* out, const float* inp, const WB& wb, const cpu::Conv2dShape& s);
void conv_backward(const Run& r, float* dinp, const float* dout, const float* inp, const WB& wb,
                   const cpu::Conv2dShape& s);
void linear_forward(const Run& r, float* out, const float* inp, const WB& wb, int M, int IC, int OC);
void linear_backward(const Run& r, float* dinp, const float* dout, const float* inp, const WB& wb, int M, int IC,
                     int OC);

}  // namespace dbcore
