// Test exports of the embedding kernels (cpu/embedding.h).
//   ops.embedding(ids I32 (…), table (V, C)) → out (…, C)
//   ops.embeddingBackward(dout (…, C), ids I32 (…), {rows: V, dtable?}) → dtable (V, C), zero-initialized unless
//     given (then it accumulates, +=)
//   ops.timestepEmbedding(t F32 (N), {dim, flipSinToCos = false, downscaleFreqShift = 1, scale = 1,
//     maxPeriod = 10000}) → (N, dim); defaults as in diffusers' get_timestep_embedding
#include "cpu/embedding.h"
#include "js_tensor.h"
#include "op_args.h"
#include "registry.h"

namespace dbcore::js {

DBCORE_OP(embedding) {
  Tensor ids = tensor_arg(info, 0, "embedding: ids", DType::I32);
  Tensor table = tensor_arg(info, 1, "embedding: table (V, C)", DType::F32, 2);
  const int V = to_int(table.dim(0), "embedding V"), C = to_int(table.dim(1), "embedding C");
  Shape shape = ids.shape;
  shape.push_back(C);
  JsTensor out = new_js_tensor(info.Env(), DType::F32, shape);
  cpu::embedding_forward(out.tensor.f32(), ids.as<int32_t>(), table.f32(), to_int(ids.numel(), "embedding M"), C, V);
  return out.object;
}

DBCORE_OP(embeddingBackward) {
  Tensor dout = tensor_arg(info, 0, "embeddingBackward: dout", DType::F32);
  Tensor ids = tensor_arg(info, 1, "embeddingBackward: ids", DType::I32);
  DBCORE_CHECK(dout.ndim() == ids.ndim() + 1, "ESHAPE", "embeddingBackward: dout %s must be ids %s plus a width",
               dout.describe().c_str(), ids.describe().c_str());
  const int C = to_int(dout.dim(-1), "embedding C");
  Shape expected = ids.shape;
  expected.push_back(C);
  check_shape(dout, expected, "embeddingBackward: dout");
  const int V = int_option(info, 2, "rows", -1, 1);
  const int M = to_int(ids.numel(), "embedding M");
  const int32_t* id = ids.as<int32_t>();
  for (int m = 0; m < M; ++m)
    DBCORE_CHECK(id[m] >= 0 && id[m] < V, "EINVAL", "embeddingBackward: id %d at position %d is outside [0, %d)",
                 id[m], m, V);
  JsTensor dtable = grad_output(info, 2, "dtable", {V, C});
  cpu::embedding_backward(dtable.tensor.f32(), dout.f32(), id, M, C);
  return dtable.object;
}

DBCORE_OP(timestepEmbedding) {
  Tensor t = tensor_arg(info, 0, "timestepEmbedding: t (N)", DType::F32, 1);
  const int dim = int_option(info, 1, "dim", -1, 2);
  const bool flip = bool_option(info, 1, "flipSinToCos", false);
  const float shift = static_cast<float>(number_option(info, 1, "downscaleFreqShift", 1.0));
  const float scale = static_cast<float>(number_option(info, 1, "scale", 1.0));
  const float max_period = static_cast<float>(number_option(info, 1, "maxPeriod", 10000.0));
  const int N = to_int(t.dim(0), "timestepEmbedding N");
  JsTensor out = new_js_tensor(info.Env(), DType::F32, {N, dim});
  cpu::timestep_embedding(out.tensor.f32(), t.f32(), N, dim, flip, shift, scale, max_period);
  return out.object;
}

}  // namespace dbcore::js
