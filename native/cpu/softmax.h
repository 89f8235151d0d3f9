// Row-wise softmax over the last dimension. Dimension letters: M rows, N columns.
// Accumulation: outputs and input gradients are written (=).
#pragma once

namespace dbcore::cpu {

// out (M, N) = exp(inp - max) / Σ exp(inp - max), per row.
void softmax_forward(float* out, const float* inp, int M, int N);
// dinp (M, N) = out · (dout - Σ_j dout_j out_j), per row.
void softmax_backward(float* dinp, const float* dout, const float* out, int M, int N);

}  // namespace dbcore::cpu
