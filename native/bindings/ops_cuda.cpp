// Test entry point of the CUDA kernels (builds with DBCORE_WITH_CUDA only): host tensors in, host tensors out.
//   ops.cudaRun(kernel, args) → results
// `kernel` names a function of native/cuda/cuda_backend.h; `args` are its arguments in order:
//   a tensor {dtype, shape, data}      an input: copied to the device
//   {out: shape, dtype?: 'F32'}        an output: allocated on the device, filled with 0xFF bytes (NaN for floats,
//                                      so an element the kernel does not write fails any comparison)
//   {inout: tensor}                    updated in place on the device (optimizer state, accumulated gradients)
//   a number or boolean                a size, a scalar or a flag
// results: the outputs and in/out tensors copied back as new tensors, in argument order, then the kernel's return
// value when it has one (a number). Every device buffer is freed on return or on error (RAII). Each table entry
// checks that every tensor has the element count the kernel will touch, so a wrong call throws ESHAPE instead of
// reading or writing out of bounds. Without a usable GPU every call throws ENODEVICE with the reason.
// ops.cudaKernels() → the names cudaRun accepts.
#ifdef DBCORE_WITH_CUDA
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

// Device memory owned for the duration of one call.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : ptr_(bytes ? cuda::device_alloc(bytes) : nullptr), bytes_(bytes) {}
  ~DeviceBuffer() { cuda::device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_;
  size_t bytes_;
};

template <typename T>
DType dtype_of();
template <>
DType dtype_of<float>() { return DType::F32; }
template <>
DType dtype_of<int32_t>() { return DType::I32; }
template <>
DType dtype_of<uint8_t>() { return DType::U8; }
template <>
DType dtype_of<uint16_t>() { return DType::BF16; }  // the 16-bit tensors the kernels take are bf16

class DeviceCall {
 public:
  DeviceCall(Napi::Env env, const std::string& kernel, Napi::Array args) : env_(env), kernel_(kernel), args_(args) {}

  size_t size() const { return args_.Length(); }

  int64_t integer(size_t k) {
    const double d = number(k);
    DBCORE_CHECK(d == std::floor(d) && std::fabs(d) < 9.0e15, "EINVAL", "%s: argument %zu must be an integer, got %g",
                 kernel_.c_str(), k, d);
    return static_cast<int64_t>(d);
  }
  int dim(size_t k) {
    const int64_t v = integer(k);
    DBCORE_CHECK(v >= 0 && v <= 0x7fffffff, "EINVAL", "%s: argument %zu must be a size in [0, 2^31), got %lld",
                 kernel_.c_str(), k, static_cast<long long>(v));
    return static_cast<int>(v);
  }
  double number(size_t k) {
    Napi::Value v = arg(k);
    DBCORE_CHECK(v.IsNumber(), "EINVAL", "%s: argument %zu must be a number", kernel_.c_str(), k);
    return v.As<Napi::Number>().DoubleValue();
  }
  bool flag(size_t k) {
    Napi::Value v = arg(k);
    DBCORE_CHECK(v.IsBoolean(), "EINVAL", "%s: argument %zu must be a boolean", kernel_.c_str(), k);
    return v.As<Napi::Boolean>().Value();
  }

  template <typename T>
  T* in(size_t k, int64_t numel) {
    return static_cast<T*>(upload(host_tensor(arg(k), k, dtype_of<T>(), numel))->get());
  }

  template <typename T>
  T* out(size_t k, int64_t numel) {
    Napi::Value v = arg(k);
    DBCORE_CHECK(v.IsObject() && v.As<Napi::Object>().Has("out"), "EINVAL",
                 "%s: argument %zu must be an output {out: shape}", kernel_.c_str(), k);
    Napi::Object spec = v.As<Napi::Object>();
    Napi::Value dtype = spec.Get("dtype");
    const DType dt = dtype.IsString() ? dtype_from_name(dtype.As<Napi::String>().Utf8Value()) : DType::F32;
    DBCORE_CHECK(dt == dtype_of<T>(), "EDTYPE", "%s: output %zu must be %s", kernel_.c_str(), k,
                 dtype_name(dtype_of<T>()));
    Shape shape = shape_of(spec.Get("out"), k);
    check_numel(shape_numel(shape), numel, k);
    auto buf = std::make_unique<DeviceBuffer>(static_cast<size_t>(numel) * sizeof(T));
    if (buf->bytes()) cuda::fill_bytes(buf->get(), 0xFF, buf->bytes());
    T* ptr = static_cast<T*>(buf->get());
    results_.push_back({k, dt, shape, buf.get()});
    buffers_.push_back(std::move(buf));
    return ptr;
  }

  template <typename T>
  T* inout(size_t k, int64_t numel) {
    Napi::Value v = arg(k);
    DBCORE_CHECK(v.IsObject() && v.As<Napi::Object>().Has("inout"), "EINVAL",
                 "%s: argument %zu must be {inout: tensor}", kernel_.c_str(), k);
    Tensor t = host_tensor(v.As<Napi::Object>().Get("inout"), k, dtype_of<T>(), numel);
    const DeviceBuffer* buf = upload(t);
    results_.push_back({k, t.dtype, t.shape, buf});
    return static_cast<T*>(buf->get());
  }

  bool is_null(size_t k) { return arg(k).IsNull() || arg(k).IsUndefined(); }

  // Zero-filled device memory of `count` T owned by this call and never copied back (a kernel's workspace).
  template <typename T = float>
  T* scratch(size_t count) {
    buffers_.push_back(std::make_unique<DeviceBuffer>(count * sizeof(T)));
    if (count) cuda::fill_bytes(buffers_.back()->get(), 0, count * sizeof(T));
    return static_cast<T*>(buffers_.back()->get());
  }

  void set_value(double v) { value_ = v, has_value_ = true; }

  Napi::Array results() {
    cuda::synchronize();  // surfaces asynchronous kernel faults here, with the kernel's name below
    Napi::Array out = Napi::Array::New(env_);
    uint32_t i = 0;
    for (const Result& r : results_) {
      JsTensor t = new_js_tensor(env_, r.dtype, r.shape);
      if (t.tensor.nbytes()) cuda::copy_to_host(t.tensor.data, r.buffer->get(), t.tensor.nbytes());
      out.Set(i++, t.object);
    }
    if (has_value_) out.Set(i, Napi::Number::New(env_, value_));
    return out;
  }

 private:
  struct Result {
    size_t index;
    DType dtype;
    Shape shape;
    const DeviceBuffer* buffer;
  };

  // A device copy of a host tensor, owned by this call.
  const DeviceBuffer* upload(const Tensor& t) {
    buffers_.push_back(std::make_unique<DeviceBuffer>(t.nbytes()));
    if (t.nbytes()) cuda::copy_to_device(buffers_.back()->get(), t.data, t.nbytes());
    return buffers_.back().get();
  }

  Napi::Value arg(size_t k) {
    DBCORE_CHECK(k < args_.Length(), "EINVAL", "%s: expected at least %zu arguments, got %u", kernel_.c_str(), k + 1,
                 args_.Length());
    return args_.Get(static_cast<uint32_t>(k));
  }
  Shape shape_of(const Napi::Value& v, size_t k) {
    DBCORE_CHECK(v.IsArray(), "EINVAL", "%s: argument %zu: out must be a shape array", kernel_.c_str(), k);
    Napi::Array a = v.As<Napi::Array>();
    Shape shape;
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value d = a.Get(i);
      DBCORE_CHECK(d.IsNumber() && d.As<Napi::Number>().DoubleValue() >= 0, "EINVAL",
                   "%s: argument %zu: shape[%u] is not a size", kernel_.c_str(), k, i);
      shape.push_back(static_cast<int64_t>(d.As<Napi::Number>().DoubleValue()));
    }
    return shape;
  }
  Tensor host_tensor(const Napi::Value& v, size_t k, DType dtype, int64_t numel) {
    const std::string what = kernel_ + " argument " + std::to_string(k);
    Tensor t = tensor_from_js(v, what.c_str());
    check_dtype(t, dtype, what.c_str());
    check_numel(t.numel(), numel, k);
    return t;
  }
  void check_numel(int64_t got, int64_t want, size_t k) {
    DBCORE_CHECK(got == want, "ESHAPE", "%s: argument %zu has %lld elements, the kernel uses %lld", kernel_.c_str(),
                 k, static_cast<long long>(got), static_cast<long long>(want));
  }

  Napi::Env env_;
  std::string kernel_;
  Napi::Array args_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  std::vector<Result> results_;
  double value_ = 0;
  bool has_value_ = false;
};

using Entry = void (*)(DeviceCall&);
using F = float;
using cuda::Precision;

Precision precision_arg(DeviceCall& c, size_t k) {
  const int64_t p = c.integer(k);
  DBCORE_CHECK(p >= 0 && p <= 2, "EINVAL", "precision must be 0 (fp32), 1 (fp16) or 2 (bf16), got %lld",
               static_cast<long long>(p));
  return static_cast<Precision>(p);
}

// args k, k+1: tile (0 auto, 1 small, 2 large) and forceScalar (cuda_backend.h's GemmPath).
cuda::GemmPath gemm_path(DeviceCall& c, size_t k) {
  const int64_t tile = c.integer(k);
  DBCORE_CHECK(tile >= 0 && tile <= 2, "EINVAL", "tile must be 0 (auto), 1 (small) or 2 (large), got %lld",
               static_cast<long long>(tile));
  return {static_cast<cuda::GemmTile>(tile), c.flag(k + 1)};
}

int64_t product(std::initializer_list<int64_t> dims) {
  int64_t p = 1;
  for (int64_t d : dims) p *= d;
  return p;
}

// The convolution shape from the 9 arguments N, C, H, W, OC, KH, KW, stride, pad starting at k (checked).
cpu::Conv2dShape conv_shape_arg(DeviceCall& c, size_t k) {
  cpu::Conv2dShape s{c.dim(k), c.dim(k + 1), c.dim(k + 2), c.dim(k + 3), c.dim(k + 4), c.dim(k + 5), c.dim(k + 6),
                     c.dim(k + 7), c.dim(k + 8)};
  cpu::check_conv2d_shape(s);
  return s;
}
int64_t conv_in_numel(const cpu::Conv2dShape& s) { return product({s.N, s.C, s.H, s.W}); }
int64_t conv_out_numel(const cpu::Conv2dShape& s) { return product({s.N, s.OC, s.OH(), s.OW()}); }
int64_t conv_weight_numel(const cpu::Conv2dShape& s) { return product({s.OC, s.C, s.KH, s.KW}); }

// (out, mean, rstd, inp, weight, bias, N, C, HW, G, eps) for GroupNorm and GroupNorm + SiLU.
using GroupNormForward = decltype(&cuda::groupnorm_forward);  // or cuda::groupnorm_silu_forward
void groupnorm_forward_call(DeviceCall& c, GroupNormForward kernel) {
  int N = c.dim(6), C = c.dim(7), HW = c.dim(8), G = c.dim(9);
  DBCORE_CHECK(G > 0, "EINVAL", "groupnorm: G must be positive");
  kernel(c.out<F>(0, product({N, C, HW})), c.out<F>(1, product({N, G})), c.out<F>(2, product({N, G})),
         c.in<F>(3, product({N, C, HW})), c.in<F>(4, C), c.in<F>(5, C), N, C, HW, G, F(c.number(10)));
}

// Each entry reads the sizes first, then the tensors with the element counts the kernel touches.
const std::map<std::string, Entry>& kernels() {
  static const std::map<std::string, Entry> table = {
      // softmax.h
      {"softmax_forward", [](DeviceCall& c) { int M = c.dim(2), N = c.dim(3); cuda::softmax_forward(c.out<F>(0, product({M, N})), c.in<F>(1, product({M, N})), M, N); }},
      {"softmax_backward", [](DeviceCall& c) { int M = c.dim(3), N = c.dim(4); int64_t n = product({M, N}); cuda::softmax_backward(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), M, N); }},
      // elementwise.h
      {"add", [](DeviceCall& c) { int64_t n = c.integer(3); cuda::add(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), n); }},
      {"add_inplace", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::add_inplace(c.inout<F>(0, n), c.in<F>(1, n), n); }},
      {"axpby", [](DeviceCall& c) { int64_t n = c.integer(5); cuda::axpby(c.out<F>(0, n), F(c.number(1)), c.in<F>(2, n), F(c.number(3)), c.in<F>(4, n), n); }},
      {"scale_inplace", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::scale_inplace(c.inout<F>(0, n), F(c.number(1)), n); }},
      {"add_channel_bias", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), HW = c.dim(4); cuda::add_channel_bias(c.inout<F>(0, product({N, C, HW})), c.in<F>(1, product({N, C})), N, C, HW); }},
      {"sum_over_hw", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), HW = c.dim(4); cuda::sum_over_hw(c.out<F>(0, product({N, C})), c.in<F>(1, product({N, C, HW})), N, C, HW); }},
      {"nchw_to_nhwc", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), HW = c.dim(4); int64_t n = product({N, C, HW}); cuda::nchw_to_nhwc(c.out<F>(0, n), c.in<F>(1, n), N, C, HW); }},
      {"nhwc_to_nchw", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), HW = c.dim(4); int64_t n = product({N, C, HW}); cuda::nhwc_to_nchw(c.out<F>(0, n), c.in<F>(1, n), N, C, HW); }},
      {"upsample_nearest2x_forward", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), H = c.dim(4), W = c.dim(5); cuda::upsample_nearest2x_forward(c.out<F>(0, product({N, C, 2 * H, 2 * W})), c.in<F>(1, product({N, C, H, W})), N, C, H, W); }},
      {"upsample_nearest2x_backward", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), H = c.dim(4), W = c.dim(5); cuda::upsample_nearest2x_backward(c.out<F>(0, product({N, C, H, W})), c.in<F>(1, product({N, C, 2 * H, 2 * W})), N, C, H, W); }},
      {"concat_channels_forward", [](DeviceCall& c) { int N = c.dim(3), Ca = c.dim(4), Cb = c.dim(5), HW = c.dim(6); cuda::concat_channels_forward(c.out<F>(0, product({N, Ca + Cb, HW})), c.in<F>(1, product({N, Ca, HW})), c.in<F>(2, product({N, Cb, HW})), N, Ca, Cb, HW); }},
      {"concat_channels_backward", [](DeviceCall& c) { int N = c.dim(3), Ca = c.dim(4), Cb = c.dim(5), HW = c.dim(6); cuda::concat_channels_backward(c.out<F>(0, product({N, Ca, HW})), c.out<F>(1, product({N, Cb, HW})), c.in<F>(2, product({N, Ca + Cb, HW})), N, Ca, Cb, HW); }},
      {"gaussian_sample", [](DeviceCall& c) { int64_t n = c.integer(5); cuda::gaussian_sample(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), c.in<F>(3, n), F(c.number(4)), n); }},
      {"crop_pad2d", [](DeviceCall& c) { int N = c.dim(2), C = c.dim(3), H = c.dim(4), W = c.dim(5), y0 = int(c.integer(6)), x0 = int(c.integer(7)), OH = c.dim(8), OW = c.dim(9); cuda::crop_pad2d(c.out<F>(0, product({N, C, OH, OW})), c.in<F>(1, product({N, C, H, W})), N, C, H, W, y0, x0, OH, OW); }},
      {"add_into_bf16", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::add_into_bf16(c.inout<uint16_t>(0, n), c.in<F>(1, n), n); }},
      {"bf16_to_f32", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::bf16_to_f32(c.out<F>(0, n), c.in<uint16_t>(1, n), n); }},
      // activation.h
      {"silu_forward", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::silu_forward(c.out<F>(0, n), c.in<F>(1, n), n); }},
      {"silu_backward", [](DeviceCall& c) { int64_t n = c.integer(3); cuda::silu_backward(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), n); }},
      {"gelu_forward", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::gelu_forward(c.out<F>(0, n), c.in<F>(1, n), n); }},
      {"gelu_backward", [](DeviceCall& c) { int64_t n = c.integer(3); cuda::gelu_backward(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), n); }},
      {"quick_gelu_forward", [](DeviceCall& c) { int64_t n = c.integer(2); cuda::quick_gelu_forward(c.out<F>(0, n), c.in<F>(1, n), n); }},
      {"quick_gelu_backward", [](DeviceCall& c) { int64_t n = c.integer(3); cuda::quick_gelu_backward(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), n); }},
      {"geglu_forward", [](DeviceCall& c) { int M = c.dim(2), Fd = c.dim(3); cuda::geglu_forward(c.out<F>(0, product({M, Fd})), c.in<F>(1, product({M, 2 * Fd})), M, Fd); }},
      {"geglu_backward", [](DeviceCall& c) { int M = c.dim(3), Fd = c.dim(4); cuda::geglu_backward(c.out<F>(0, product({M, 2 * Fd})), c.in<F>(1, product({M, Fd})), c.in<F>(2, product({M, 2 * Fd})), M, Fd); }},
      // norm.h
      {"groupnorm_forward", [](DeviceCall& c) { groupnorm_forward_call(c, cuda::groupnorm_forward); }},
      {"groupnorm_silu_forward", [](DeviceCall& c) { groupnorm_forward_call(c, cuda::groupnorm_silu_forward); }},
      {"groupnorm_backward", [](DeviceCall& c) {
         int N = c.dim(8), C = c.dim(9), HW = c.dim(10), G = c.dim(11);
         cuda::groupnorm_backward(c.out<F>(0, product({N, C, HW})), c.inout<F>(1, C), c.inout<F>(2, C), c.in<F>(3, product({N, C, HW})),
                                  c.in<F>(4, product({N, C, HW})), c.in<F>(5, C), c.in<F>(6, product({N, G})), c.in<F>(7, product({N, G})), N, C, HW, G); }},
      // (dinp, dweight, dbias, dout, inp, weight, bias, mean, rstd, N, C, HW, G)
      {"groupnorm_silu_backward", [](DeviceCall& c) {
         int N = c.dim(9), C = c.dim(10), HW = c.dim(11), G = c.dim(12);
         DBCORE_CHECK(G > 0, "EINVAL", "groupnorm_silu_backward: G must be positive");
         cuda::groupnorm_silu_backward(c.out<F>(0, product({N, C, HW})), c.inout<F>(1, C), c.inout<F>(2, C),
                                       c.in<F>(3, product({N, C, HW})), c.in<F>(4, product({N, C, HW})), c.in<F>(5, C), c.in<F>(6, C),
                                       c.in<F>(7, product({N, G})), c.in<F>(8, product({N, G})), N, C, HW, G); }},
      {"layernorm_forward", [](DeviceCall& c) {
         int M = c.dim(6), C = c.dim(7);
         cuda::layernorm_forward(c.out<F>(0, product({M, C})), c.out<F>(1, M), c.out<F>(2, M), c.in<F>(3, product({M, C})), c.in<F>(4, C),
                                 c.in<F>(5, C), M, C, F(c.number(8))); }},
      {"layernorm_backward", [](DeviceCall& c) {
         int M = c.dim(8), C = c.dim(9);
         cuda::layernorm_backward(c.out<F>(0, product({M, C})), c.inout<F>(1, C), c.inout<F>(2, C), c.in<F>(3, product({M, C})),
                                  c.in<F>(4, product({M, C})), c.in<F>(5, C), c.in<F>(6, M), c.in<F>(7, M), M, C); }},
      // embedding.h
      {"embedding_forward", [](DeviceCall& c) { int M = c.dim(3), C = c.dim(4), V = c.dim(5); cuda::embedding_forward(c.out<F>(0, product({M, C})), c.in<int32_t>(1, M), c.in<F>(2, product({V, C})), M, C, V); }},
      {"embedding_backward", [](DeviceCall& c) {
         // The ids are checked on the host first: the kernel trusts them (as the CPU twin does).
         int M = c.dim(3), C = c.dim(4), V = c.dim(5);
         float* dtable = c.inout<F>(0, product({V, C}));
         const float* dout = c.in<F>(1, product({M, C}));
         std::vector<int32_t> ids(M);
         const int32_t* d_ids = c.in<int32_t>(2, M);
         if (M) cuda::copy_to_host(ids.data(), d_ids, sizeof(int32_t) * M);
         for (int m = 0; m < M; ++m) DBCORE_CHECK(ids[m] >= 0 && ids[m] < V, "EINVAL", "embedding_backward: id %d at %d is outside [0, %d)", ids[m], m, V);
         cuda::embedding_backward(dtable, dout, d_ids, M, C); }},
      {"timestep_embedding", [](DeviceCall& c) { int N = c.dim(2), dim = c.dim(3); cuda::timestep_embedding(c.out<F>(0, product({N, dim})), c.in<F>(1, N), N, dim, c.flag(4), F(c.number(5)), F(c.number(6)), F(c.number(7))); }},
      // loss.h, optim.h
      {"mse_forward", [](DeviceCall& c) { int64_t n = c.integer(2); c.set_value(cuda::mse_forward(c.in<F>(0, n), c.in<F>(1, n), n)); }},
      {"mse_backward", [](DeviceCall& c) { int64_t n = c.integer(3); cuda::mse_backward(c.out<F>(0, n), c.in<F>(1, n), c.in<F>(2, n), n, F(c.number(4))); }},
      {"sum_of_squares_into", [](DeviceCall& c) {
         // args: acc0, x_0, n_0, x_1, n_1, …; result: the device accumulator, set to acc0, after one
         // sum_of_squares_into(acc, x_j, n_j) per pair (acc0 + Σ_j Σ x_j²).
         DBCORE_CHECK(c.size() % 2 == 1, "EINVAL", "sum_of_squares_into: expected acc0 then (x, n) pairs");
         double* acc = c.scratch<double>(1);
         const double acc0 = c.number(0);
         cuda::copy_to_device(acc, &acc0, sizeof(double));
         for (size_t k = 1; k < c.size(); k += 2) {
           const int64_t n = c.integer(k + 1);
           cuda::sum_of_squares_into(acc, c.in<F>(k, n), n);
         }
         double sum = 0.0;
         cuda::copy_to_host(&sum, acc, sizeof(double));
         c.set_value(sum); }},
      {"adamw_step", [](DeviceCall& c) {
         // args: {inout: param}, {inout: m}, {inout: v}, grad, lr, beta1, beta2, eps, weight_decay, step, n
         int64_t n = c.integer(10);
         cuda::AdamWHyper h;
         h.lr = c.number(4), h.beta1 = c.number(5), h.beta2 = c.number(6), h.eps = c.number(7), h.weight_decay = c.number(8);
         cuda::adamw_step(c.inout<F>(0, n), c.inout<F>(1, n), c.inout<F>(2, n), c.in<F>(3, n), h, c.integer(9), n); }},
      {"adam8bit_blockwise_step", [](DeviceCall& c) {
         // args: {inout: param}, {inout: state1 U8}, {inout: state2 U8}, {inout: absmax1}, {inout: absmax2}, grad,
         //       qmap1, qmap2, lr, beta1, beta2, eps, weight_decay, gnorm_scale, step, n
         int64_t n = c.integer(15), nb = (n + cpu::kAdam8bitBlockSize - 1) / cpu::kAdam8bitBlockSize;
         cuda::Adam8bitHyper h;
         h.lr = F(c.number(8)), h.beta1 = F(c.number(9)), h.beta2 = F(c.number(10)), h.eps = F(c.number(11));
         h.weight_decay = F(c.number(12)), h.gnorm_scale = F(c.number(13)), h.step = c.integer(14);
         cuda::adam8bit_blockwise_step(c.inout<F>(0, n), c.inout<uint8_t>(1, n), c.inout<uint8_t>(2, n), c.inout<F>(3, nb), c.inout<F>(4, nb),
                                       c.in<F>(5, n), c.in<F>(6, 256), c.in<F>(7, 256), h, n); }},
      {"adam32bit_step", [](DeviceCall& c) {
         // args: {inout: param}, {inout: m}, {inout: v}, grad, lr, beta1, beta2, eps, weight_decay, gnorm_scale, step, n
         int64_t n = c.integer(11);
         cuda::Adam8bitHyper h;
         h.lr = F(c.number(4)), h.beta1 = F(c.number(5)), h.beta2 = F(c.number(6)), h.eps = F(c.number(7));
         h.weight_decay = F(c.number(8)), h.gnorm_scale = F(c.number(9)), h.step = c.integer(10);
         cuda::adam32bit_step(c.inout<F>(0, n), c.inout<F>(1, n), c.inout<F>(2, n), c.in<F>(3, n), h, n); }},
      // gemm.h, linear.h: precision 0 fp32, 1 fp16, 2 bf16
      {"sgemm", [](DeviceCall& c) {
         // args: {out|inout: C (M, N)}, A, B, transA, transB, M, N, K, alpha, beta, precision (lda/ldb/ldc packed)
         bool ta = c.flag(3), tb = c.flag(4);
         int M = c.dim(5), N = c.dim(6), K = c.dim(7);
         float beta = F(c.number(9));
         float* C = beta == 0.f ? c.out<F>(0, product({M, N})) : c.inout<F>(0, product({M, N}));
         cuda::sgemm(ta, tb, M, N, K, F(c.number(8)), c.in<F>(1, product({M, K})), ta ? M : K, c.in<F>(2, product({K, N})), tb ? K : N,
                     beta, C, N, precision_arg(c, 10)); }},
      {"sgemm_ex", [](DeviceCall& c) {
         // args: {out|inout: C}, A, B, transA, transB, M, N, K, alpha, beta, lda, ldb, ldc, strideA, strideB, strideC,
         //       batch, precision, bias (N) | null, tile (0 auto, 1 small, 2 large), forceScalar.
         // Each operand holds (batch − 1)·stride + rows·ld elements; ld must cover the row width.
         bool ta = c.flag(3), tb = c.flag(4);
         int M = c.dim(5), N = c.dim(6), K = c.dim(7), lda = c.dim(10), ldb = c.dim(11), ldc = c.dim(12), batch = c.dim(16);
         int64_t sa = c.integer(13), sb = c.integer(14), sc = c.integer(15);
         DBCORE_CHECK(lda >= (ta ? M : K) && ldb >= (tb ? K : N) && ldc >= N, "ESHAPE", "sgemm_ex: a leading dimension is below its row width");
         const auto span = [batch](int64_t stride, int64_t rows, int64_t ld) { return batch ? (batch - 1) * stride + rows * ld : 0; };
         float beta = F(c.number(9));
         float* C = beta == 0.f ? c.out<F>(0, span(sc, M, ldc)) : c.inout<F>(0, span(sc, M, ldc));
         const float* A = c.in<F>(1, span(sa, ta ? K : M, lda));
         const float* B = c.in<F>(2, span(sb, tb ? N : K, ldb));
         cuda::GemmEpilogue epilogue{c.is_null(18) ? nullptr : c.in<F>(18, N)};
         cuda::sgemm_batched(ta, tb, M, N, K, F(c.number(8)), A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch, precision_arg(c, 17),
                             epilogue, gemm_path(c, 19)); }},
      {"linear_geglu_forward", [](DeviceCall& c) {
         // args: out (M, F), pre (M, 2F), inp, weight (2F, IC), bias (2F) | null, M, IC, F, precision, tile, forceScalar
         int M = c.dim(5), IC = c.dim(6), Fd = c.dim(7);
         float* o = c.out<F>(0, product({M, Fd}));
         float* pre = c.out<F>(1, product({M, 2, Fd}));
         const float* inp = c.in<F>(2, product({M, IC}));
         const float* w = c.in<F>(3, product({2, Fd, IC}));
         const float* bias = c.is_null(4) ? nullptr : c.in<F>(4, product({2, Fd}));
         cuda::linear_geglu_forward(o, pre, inp, w, bias, M, IC, Fd, precision_arg(c, 8), gemm_path(c, 9)); }},
      {"linear_forward", [](DeviceCall& c) {
         // args: out, inp, weight, bias (or null), M, IC, OC, precision
         int M = c.dim(4), IC = c.dim(5), OC = c.dim(6);
         float* out = c.out<F>(0, product({M, OC}));
         const float* inp = c.in<F>(1, product({M, IC}));
         const float* w = c.in<F>(2, product({OC, IC}));
         const float* bias = c.is_null(3) ? nullptr : c.in<F>(3, OC);
         cuda::linear_forward(out, inp, w, bias, M, IC, OC, precision_arg(c, 7)); }},
      {"linear_backward", [](DeviceCall& c) {
         // args: out dinp, {inout: dweight}, {inout: dbias}, dout, inp, weight, M, IC, OC, precision
         int M = c.dim(6), IC = c.dim(7), OC = c.dim(8);
         cuda::linear_backward(c.out<F>(0, product({M, IC})), c.inout<F>(1, product({OC, IC})), c.inout<F>(2, OC), c.in<F>(3, product({M, OC})),
                               c.in<F>(4, product({M, IC})), c.in<F>(5, product({OC, IC})), M, IC, OC, precision_arg(c, 9)); }},
      // conv2d.h: shape arguments N, C, H, W, OC, KH, KW, stride, pad; the workspace is allocated per call
      {"conv2d_forward", [](DeviceCall& c) {
         // args: out, inp, weight, bias (or null), N, C, H, W, OC, KH, KW, stride, pad, precision
         cpu::Conv2dShape s = conv_shape_arg(c, 4);
         float* out = c.out<F>(0, conv_out_numel(s));
         const float* inp = c.in<F>(1, conv_in_numel(s));
         const float* w = c.in<F>(2, conv_weight_numel(s));
         const float* bias = c.is_null(3) ? nullptr : c.in<F>(3, s.OC);
         cuda::conv2d_forward(out, inp, w, bias, c.scratch(cuda::conv2d_workspace_floats(s)), s, precision_arg(c, 13)); }},
      {"conv2d_backward", [](DeviceCall& c) {
         // args: out dinp (or null), {inout: dweight} (or null), {inout: dbias} (or null), dout, inp, weight,
         //       N, C, H, W, OC, KH, KW, stride, pad, precision
         cpu::Conv2dShape s = conv_shape_arg(c, 6);
         float* dinp = c.is_null(0) ? nullptr : c.out<F>(0, conv_in_numel(s));
         float* dw = c.is_null(1) ? nullptr : c.inout<F>(1, conv_weight_numel(s));
         float* db = c.is_null(2) ? nullptr : c.inout<F>(2, s.OC);
         cuda::conv2d_backward(dinp, dw, db, c.in<F>(3, conv_out_numel(s)), c.in<F>(4, conv_in_numel(s)), c.in<F>(5, conv_weight_numel(s)),
                               c.scratch(cuda::conv2d_workspace_floats(s)), s, precision_arg(c, 15)); }},
      // attention.h (precision optional, default fp32)
      {"attention_forward", [](DeviceCall& c) {
         // args: out, lse, q, k, v, B, Tq, Tk, NH, D, scale, causal, precision?
         int B = c.dim(5), Tq = c.dim(6), Tk = c.dim(7), NH = c.dim(8), D = c.dim(9);
         int64_t nq = product({B, Tq, NH, D}), nk = product({B, Tk, NH, D});
         cuda::attention_forward(c.out<F>(0, nq), c.out<F>(1, product({B, NH, Tq})), c.in<F>(2, nq), c.in<F>(3, nk), c.in<F>(4, nk), B, Tq, Tk,
                                 NH, D, F(c.number(10)), c.flag(11), c.size() > 12 ? precision_arg(c, 12) : Precision::F32); }},
      {"attention_backward", [](DeviceCall& c) {
         // args: dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, NH, D, scale, causal, precision?
         int B = c.dim(9), Tq = c.dim(10), Tk = c.dim(11), NH = c.dim(12), D = c.dim(13);
         int64_t nq = product({B, Tq, NH, D}), nk = product({B, Tk, NH, D});
         cuda::attention_backward(c.out<F>(0, nq), c.out<F>(1, nk), c.out<F>(2, nk), c.in<F>(3, nq), c.in<F>(4, nq), c.in<F>(5, nk),
                                  c.in<F>(6, nk), c.in<F>(7, nq), c.in<F>(8, product({B, NH, Tq})), B, Tq, Tk, NH, D, F(c.number(14)),
                                  c.flag(15), c.size() > 16 ? precision_arg(c, 16) : Precision::F32); }},
      // Timings for scripts/bench-cuda.js: the kernel alone (inputs already on the device), median ms by CUDA events.
      {"time_sgemm", [](DeviceCall& c) {
         // args: A (M, K), B (N, K) (the Linear layout: C = A·Bᵀ), M, N, K, precision, reps, out C,
         //       [tile (0 auto, 1 small, 2 large), forceScalar]
         int M = c.dim(2), N = c.dim(3), K = c.dim(4);
         const float* A = c.in<F>(0, product({M, K}));
         const float* B = c.in<F>(1, product({N, K}));
         float* C = c.out<F>(7, product({M, N}));
         Precision p = precision_arg(c, 5);
         const cuda::GemmPath path = c.size() > 8 ? gemm_path(c, 8) : cuda::GemmPath{};
         c.set_value(cuda::time_ms([&] { cuda::sgemm(false, true, M, N, K, 1.f, A, K, B, K, 0.f, C, N, p, {}, path); }, 2, c.dim(6))); }},
      {"time_conv2d", [](DeviceCall& c) {
         // args: inp, weight, dout, N, C, H, W, OC, KH, KW, stride, pad, precision, pass (0 forward, 1 input
         //       gradient, 2 weight gradient), reps
         cpu::Conv2dShape s = conv_shape_arg(c, 3);
         const float* inp = c.in<F>(0, conv_in_numel(s));
         const float* w = c.in<F>(1, conv_weight_numel(s));
         const float* dout = c.in<F>(2, conv_out_numel(s));
         const Precision p = precision_arg(c, 12);
         const int64_t pass = c.integer(13);
         DBCORE_CHECK(pass >= 0 && pass <= 2, "EINVAL", "time_conv2d: pass must be 0, 1 or 2, got %lld", static_cast<long long>(pass));
         float* ws = c.scratch(cuda::conv2d_workspace_floats(s));
         float* result = c.scratch(static_cast<size_t>(pass == 0 ? conv_out_numel(s) : pass == 1 ? conv_in_numel(s) : conv_weight_numel(s)));
         c.set_value(cuda::time_ms([&] {
           if (pass == 0) cuda::conv2d_forward(result, inp, w, nullptr, ws, s, p);
           else if (pass == 1) cuda::conv2d_backward(result, nullptr, nullptr, dout, inp, w, ws, s, p);
           else cuda::conv2d_backward(nullptr, result, nullptr, dout, inp, w, ws, s, p);
         }, 2, c.dim(14))); }},
      {"time_attention", [](DeviceCall& c) {
         // args: q (B, Tq, NH·D), k, v (B, Tk, NH·D), dout (B, Tq, NH·D), B, Tq, Tk, NH, D, precision, backward, reps.
         // backward false: the forward alone; true: forward then backward (one training step's attention).
         int B = c.dim(4), Tq = c.dim(5), Tk = c.dim(6), NH = c.dim(7), D = c.dim(8);
         int64_t nq = product({B, Tq, NH, D}), nk = product({B, Tk, NH, D});
         const float *q = c.in<F>(0, nq), *k = c.in<F>(1, nk), *v = c.in<F>(2, nk), *dout = c.in<F>(3, nq);
         const Precision p = precision_arg(c, 9);
         const bool backward = c.flag(10);
         DeviceBuffer o(sizeof(F) * nq), lse(sizeof(F) * product({B, NH, Tq})), dq(sizeof(F) * nq), dk(sizeof(F) * nk),
             dv(sizeof(F) * nk);
         const float scale = 1.f / std::sqrt(static_cast<float>(D));
         auto f = [](const DeviceBuffer& b) { return static_cast<float*>(b.get()); };
         c.set_value(cuda::time_ms([&] {
           cuda::attention_forward(f(o), f(lse), q, k, v, B, Tq, Tk, NH, D, scale, false, p);
           if (backward)
             cuda::attention_backward(f(dq), f(dk), f(dv), dout, q, k, v, f(o), f(lse), B, Tq, Tk, NH, D, scale, false, p);
         }, 1, c.dim(11))); }},
  };
  return table;
}

// The device, checked once per process; ENODEVICE with the reason when it cannot be used.
void require_device() {
  static const cuda::DeviceInfo info = [] {
    try {
      return cuda::query_device(0);
    } catch (const std::exception& e) {
      cuda::DeviceInfo d;
      d.reason = std::string("querying the GPU failed: ") + e.what();
      return d;
    }
  }();
  DBCORE_CHECK(info.available, "ENODEVICE", "CUDA kernels cannot run here: %s", info.reason.c_str());
}

}  // namespace

DBCORE_OP(cudaRun) {
  DBCORE_CHECK(info.Length() >= 2 && info[0].IsString() && info[1].IsArray(), "EINVAL",
               "cudaRun(kernel: string, args: array)");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  auto it = kernels().find(name);
  DBCORE_CHECK(it != kernels().end(), "EINVAL", "cudaRun: unknown kernel '%s' (ops.cudaKernels() lists them)",
               name.c_str());
  require_device();
  DeviceCall call(info.Env(), name, info[1].As<Napi::Array>());
  it->second(call);
  return call.results();
}

DBCORE_OP(cudaKernels) {
  Napi::Array names = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (const auto& [name, entry] : kernels()) names.Set(i++, name);
  return names;
}

}  // namespace dbcore::js
#endif  // DBCORE_WITH_CUDA
