// Test exports of the CUDA GEMM's index math (native/cuda/gemm_tile.h, host-compiled here, so the CPU-only build
// tests what the kernel runs; test/native/gemm-tile.test.ts):
//   ops.gemmTileLayout(rows, width) → I32 (rows, width): element offset of each logical (row, col) in shared memory
//   ops.gemmLdmatrixRows(operandA, kMajor, mn, kk) → I32 (32, 2): (row, col) of the row segment each lane addresses
//   ops.gemmGegluColumns(blockN, tileN) → I32 (tileN, 2): (feature, isGate) of each tile column of a GEGLU block
//   ops.gemmPlan({M, N, batch, smCount, largeM, largeN, address, ld, stride, contiguous})
//     → {largeTile, float4Loads}: the launch-time choices
#include "cuda/gemm_tile.h"
#include "js_tensor.h"
#include "registry.h"

namespace dbcore::js {
namespace {

int int_in(const Napi::CallbackInfo& info, size_t index, const char* what, int64_t lo, int64_t hi) {
  const int64_t v = int_arg(info, index, what);
  DBCORE_CHECK(v >= lo && v <= hi, "EINVAL", "%s must be in [%lld, %lld], got %lld", what, static_cast<long long>(lo),
               static_cast<long long>(hi), static_cast<long long>(v));
  return static_cast<int>(v);
}

bool bool_in(const Napi::CallbackInfo& info, size_t index, const char* what) {
  DBCORE_CHECK(info.Length() > index && info[index].IsBoolean(), "EINVAL", "%s must be a boolean", what);
  return info[index].As<Napi::Boolean>().Value();
}

}  // namespace

DBCORE_OP(gemmTileLayout) {
  const int rows = int_in(info, 0, "gemmTileLayout: rows", 1, 4096);
  const int width = int_in(info, 1, "gemmTileLayout: width", 8, 4096);
  DBCORE_CHECK(width % 8 == 0 && ((width / 8) & (width / 8 - 1)) == 0, "EINVAL",
               "gemmTileLayout: width %d must be 8 times a power of two", width);
  JsTensor t = new_js_tensor(info.Env(), DType::I32, {rows, width});
  int32_t* o = t.tensor.as<int32_t>();
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < width; ++c) o[r * width + c] = cuda::tile::swizzled_offset(r, c, width);
  return t.object;
}

DBCORE_OP(gemmLdmatrixRows) {
  const bool operand_a = bool_in(info, 0, "gemmLdmatrixRows: operandA");
  const bool k_major = bool_in(info, 1, "gemmLdmatrixRows: kMajor");
  const int mn = int_in(info, 2, "gemmLdmatrixRows: mn", 0, 1 << 20);
  const int kk = int_in(info, 3, "gemmLdmatrixRows: kk", 0, 1 << 20);
  JsTensor t = new_js_tensor(info.Env(), DType::I32, {32, 2});
  int32_t* o = t.tensor.as<int32_t>();
  for (int lane = 0; lane < 32; ++lane) {
    const cuda::tile::TileCoord c = cuda::tile::ldmatrix_row(lane, operand_a, k_major, mn, kk);
    o[2 * lane] = c.row, o[2 * lane + 1] = c.col;
  }
  return t.object;
}

DBCORE_OP(gemmGegluColumns) {
  const int block_n = int_in(info, 0, "gemmGegluColumns: blockN", 0, 1 << 20);
  const int tile_n = int_in(info, 1, "gemmGegluColumns: tileN", 32, 1024);
  DBCORE_CHECK(tile_n % 32 == 0, "EINVAL", "gemmGegluColumns: tileN %d must be a multiple of 32", tile_n);
  JsTensor t = new_js_tensor(info.Env(), DType::I32, {tile_n, 2});
  int32_t* o = t.tensor.as<int32_t>();
  for (int col = 0; col < tile_n; ++col) {
    const cuda::tile::GegluColumn c = cuda::tile::geglu_column(block_n, tile_n, col);
    o[2 * col] = c.feature, o[2 * col + 1] = c.gate ? 1 : 0;
  }
  return t.object;
}

DBCORE_OP(gemmPlan) {
  Napi::Object q = object_arg(info, 0, "gemmPlan: query");
  const char* what = "gemmPlan";
  const auto integer = [&](const char* key) { return static_cast<int64_t>(require_number(q, key, what)); };
  const bool large = cuda::tile::use_large_tile(static_cast<int>(integer("M")), static_cast<int>(integer("N")),
                                                static_cast<int>(integer("batch")), static_cast<int>(integer("largeM")),
                                                static_cast<int>(integer("largeN")),
                                                static_cast<int>(integer("smCount")));
  const bool vec = cuda::tile::float4_loads_ok(static_cast<uint64_t>(integer("address")), integer("ld"),
                                               integer("stride"), static_cast<int>(integer("contiguous")));
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("largeTile", large);
  r.Set("float4Loads", vec);
  return r;
}

}  // namespace dbcore::js
