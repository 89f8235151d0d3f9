// Fused multi-head attention: softmax(scale · Q Kᵀ [+ causal mask]) V, tiled with an online softmax
// (FlashAttention-2, Dao 2023, Alg. 1 forward / Alg. 2 backward): never materializes (Tq, Tk) per head, memory
// O(T); backward recomputes the probabilities from the saved log-sum-exp.
// Dimension letters: B batch, Tq query / Tk key tokens, NH heads, D head size. Q (B, Tq, NH·D) with head h in
// columns [h·D, (h+1)·D) (the layout of a Linear's output), K and V (B, Tk, NH·D), out (B, Tq, NH·D),
// lse (B, NH, Tq) = log Σ_j exp(scale · q·k_j).
// Accumulation: dq, dk, dv are written (=).
#pragma once
#include "core/precision.h"

namespace dbcore::cpu {

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int NH, int D, float scale, bool causal,
                       Precision precision = Precision::F32);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int NH, int D,
                        float scale, bool causal,
                        Precision precision = Precision::F32);

}  // namespace dbcore::cpu
