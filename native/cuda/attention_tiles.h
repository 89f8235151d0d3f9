// Host-and-device pieces of the tensor-core flash attention (native/cuda/attention_tc.cu), plain C++ so that the
// CPU tests run them: ops.attentionTiledHost (native/bindings/ops_attention.cpp) replays the kernels' tile loops
// on the host with these functions and is checked against cpu::attention_forward / attention_backward.
//  - head padding: the kernels are instantiated for a few head sizes (multiples of 16, the mma k-step); a head of
//    D columns runs in the smallest one ≥ D with the extra columns zero (40 → 48);
//  - tile plans (query rows × key rows per CTA and loop step) and their static shared-memory footprint;
//  - causal tile ranges (top-left mask: query i sees keys j ≤ i, as cpu/attention.h);
//  - the online-softmax recurrence of FlashAttention-2 (Dao 2023, Alg. 1 lines 8-10, 12-13) with its -inf cases.
// Dimension letters as cpu/attention.h: Tq query / Tk key tokens, D head size, Dp the padded head size.
#pragma once
#include <math.h>

#include "core/host_device.h"

namespace dbcore::cuda::attn_tiles {

constexpr int kMaxHead = 160;                           // SD's heads: 40, 64, 80, 160
constexpr int kRowPad = 8;                              // 16-bit elements of padding per shared row (bank spread)
constexpr int kStaticSharedLimit = 48 * 1024;           // bytes of static shared memory a CTA may declare

// Padded head size the kernels run for D (zero columns beyond D), or 0 when D is outside [1, kMaxHead]. The
// instantiated sizes: 32, 48, 64, 80, 128, 160.
DBCORE_HOST_DEVICE constexpr int padded_head(int D) {
  return D < 1 || D > kMaxHead ? 0 : D <= 32 ? 32 : D <= 48 ? 48 : D <= 64 ? 64 : D <= 80 ? 80 : D <= 128 ? 128 : 160;
}

// rows: query rows per tile (16 per warp), keys: key rows per tile.
struct TilePlan {
  int rows, keys;
};

// Forward: a CTA owns 64 query rows (4 warps of 16) and loops over key tiles of 64; Q is staged through the K tile
// into registers, so shared memory holds the K and V tiles only.
DBCORE_HOST_DEVICE constexpr TilePlan forward_plan(int /*Dp*/) { return {64, 64}; }

// Backward: the dK/dV kernel owns `keys` key rows (16 per warp) and loops over query tiles of `rows`; the dQ kernel
// owns `rows` query rows (16 per warp) and loops over key tiles of `keys`. Both hold Q, dO, K and V tiles in shared
// memory; heads over 80 halve the tiles to stay within the static limit.
DBCORE_HOST_DEVICE constexpr TilePlan backward_plan(int Dp) {
  return Dp > 80 ? TilePlan{32, 32} : TilePlan{64, 64};
}

// Shared bytes of a (rows, Dp + kRowPad) tile of 16-bit elements.
DBCORE_HOST_DEVICE constexpr int tile_bytes(int rows, int Dp) { return rows * (Dp + kRowPad) * 2; }
DBCORE_HOST_DEVICE constexpr int forward_shared_bytes(int Dp) { return 2 * tile_bytes(forward_plan(Dp).keys, Dp); }
// Q, dO, K, V tiles plus the query tile's lse and Di (fp32).
DBCORE_HOST_DEVICE constexpr int backward_shared_bytes(int Dp) {
  return 2 * tile_bytes(backward_plan(Dp).rows, Dp) + 2 * tile_bytes(backward_plan(Dp).keys, Dp) +
         2 * backward_plan(Dp).rows * 4;
}

DBCORE_HOST_DEVICE constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

// End of the keys [0, key_end) that query rows [first_query, first_query + rows) may see.
DBCORE_HOST_DEVICE constexpr int key_end(int first_query, int rows, int Tk, bool causal) {
  return causal ? (first_query + rows < Tk ? first_query + rows : Tk) : Tk;
}

// First query tile (a multiple of `rows`) with a query that may see key `first_key`.
DBCORE_HOST_DEVICE constexpr int query_begin(int first_key, int rows, bool causal) {
  return causal ? (first_key / rows) * rows : 0;
}

// Whether query i sees key j (j inside the keys, and j ≤ i under the causal mask).
DBCORE_HOST_DEVICE constexpr bool visible(int i, int j, int Tk, bool causal) { return j < Tk && (!causal || j <= i); }

// Online softmax, per query row: m the running max of the visible scores (-inf before any), l the running sum of
// exp(s − m). Folding in a tile whose visible scores have max tile_max: m' = max(m, tile_max), and l and the output
// accumulator are multiplied by the returned exp(m − m') (0 when nothing was visible before, never NaN).
DBCORE_HOST_DEVICE inline float rescale_to(float& m, float tile_max) {
  const float m_new = fmaxf(m, tile_max);
  const float alpha = m == -INFINITY ? 0.f : expf(m - m_new);
  m = m_new;
  return alpha;
}

// What to subtract from a score before exp: m, or 0 while m = -inf (then every score is -inf and exp gives 0).
DBCORE_HOST_DEVICE inline float exp_shift(float m) { return m == -INFINITY ? 0.f : m; }

// lse = m + log l (-inf for a row that saw no key) and the output's 1 / l (0 for such a row).
DBCORE_HOST_DEVICE inline float row_lse(float m, float l) { return l > 0.f ? m + logf(l) : -INFINITY; }
DBCORE_HOST_DEVICE inline float row_inverse(float l) { return l > 0.f ? 1.f / l : 0.f; }

}  // namespace dbcore::cuda::attn_tiles
