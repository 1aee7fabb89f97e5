/* The C kernels of minillm's `c` backend. float32 throughout; row-major; every function
 * handles any size. The cffi build reads this header for the Python bindings. */
#ifndef MINILLM_KERNELS_H
#define MINILLM_KERNELS_H

/* ---- matmul: C (M×N) = A (M×K) · B (K×N) ---------------------------------------------
 * The numbered versions teach the path from the naive loop to the final kernel; they take
 * contiguous row-major operands. */
void matmul_v1_naive(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v2_reordered(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v3_blocked(const float *A, const float *B, float *C, int M, int N, int K);
/* v4 = packing + register-blocked micro-kernel, v5 = the same on every core, v6 = v5 reading a
 * nearby A where it lies, v7 = v6 on each core's own rows of C, v8 = v7 with the tiles row by
 * row so that an A sliver stays in L1; kernels/c/matmul/matmul.h lists them, one file each */
void matmul_v4_packed(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v5_threaded(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v6_in_place(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v7_own_rows(const float *A, const float *B, float *C, int M, int N, int K);
void matmul_v8_sliver_in_l1(const float *A, const float *B, float *C, int M, int N, int K);

/* The backend's kernel (matmul/sgemm.c: v8, or v6 for a product with few rows): `batches`
 * products; element (m, k) of batch z of A is A[z*sab + m*sam + k*sak] (likewise B), so
 * transposes and broadcast batches cost nothing.
 * C is contiguous (batches × M × N). threads: 0 = all cores. */
void sgemm_strided(const float *A, const float *B, float *C, int batches, int M, int N, int K,
                   long long sab, long long sam, long long sak, long long sbb, long long sbk, long long sbn,
                   int threads);
/* C = A·B + bias (bias broadcast over the M rows; NULL for none): one 2-D product, a Linear
 * layer's forward in one pass */
void sgemm_bias(const float *A, const float *B, const float *bias, float *C, int M, int N, int K, long long sam,
                long long sak, long long sbk, long long sbn, int threads);
/* the backward of y = x·Wᵀ + b for g (rows × out), x (rows × in), W (out × in): gx = g·W,
 * gw = gᵀ·x, gb = Σ_rows g; an output left NULL is not computed (linear.c) */
void linear_backward(const float *g, const float *x, const float *w, float *gx, float *gw, float *gb, int rows,
                     int in, int out, int threads);

/* ---- attention over N heads of (T, D): flash-style, online softmax, O(T·D) memory ------
 * head z's rows lie ld floats apart from (z / heads)·T·ld + (z % heads)·D (attention.c):
 * heads = 1, ld = D is a contiguous (N, T, D) tensor; ld = 3C a third of a (B, T, 3C) qkv */
void attention_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                       int n, int t_query, int t_key, int d, int causal, float scale, int heads, long ld_in,
                       long ld_out);
void attention_backward(const float *q, const float *k, const float *v, const float *out, const float *lse,
                        const float *dout, float *dq, float *dk, float *dv,
                        int n, int t_query, int t_key, int d, int causal, float scale, int heads, long ld_in,
                        long ld_out);

/* decoding: Tq ≤ 4 queries against a cache whose heads lie k_head_stride / v_head_stride apart */
void attention_decode_forward(const float *q, const float *k, const float *v, float *out, float *lse, int n,
                              int t_query, int t_key, int d, long long k_head_stride, long long v_head_stride,
                              int causal, float scale);
/* v1, one query row at a time (attention_rows.c): the step before the tiles, kept to be timed */
void attention_rows_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                            int n, int t_query, int t_key, int d, int causal, float scale);
void attention_rows_backward(const float *q, const float *k, const float *v, const float *out, const float *lse,
                             const float *dout, float *dq, float *dk, float *dv,
                             int n, int t_query, int t_key, int d, int causal, float scale);

/* ---- an embedding's backward: target[index[i]] += values[i] (rows of `width`), repeats adding up -- */
void embedding_backward(float *target, const long long *index, const float *values, long long count,
                        long long width);

/* ---- layer norm over the rows of an (N, D) matrix ------------------------------------------ */
void layernorm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                       int rows, int d, float eps);
void layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                        float *dx, float *dw, float *db, int rows, int d);

/* ---- softmax cross-entropy over (N, C) logits and int64 targets ----------------------------- */
void cross_entropy_forward(const float *logits, const long long *target, float *loss, float *lse,
                           int rows, int classes, long long ignore_index);
void cross_entropy_backward(const float *logits, const long long *target, const float *lse, const float *dloss,
                            float *dlogits, int rows, int classes, long long ignore_index);

/* ---- out = a + b over n floats (the residual stream and its gradient) ------------------------ */
void add_arrays(const float *a, const float *b, float *out, long long n);

/* ---- GELU, tanh form, elementwise over n values ---------------------------------------------- */
void gelu_forward(const float *x, float *y, long long n);
void gelu_backward(const float *x, const float *dy, float *dx, long long n);

/* ---- Llama's blocks: RMSNorm over (N, D) rows; RoPE on (B, H, T, d) heads, x and out each
 * through its (b, h, t) strides, tables T × d/2, the backward passes −sin; SwiGLU's gate
 * silu(a)·b over rows × cols, a, b and the gradients (ldg) each with its row stride, y and dy
 * contiguous ------------------------------------------------------------------------------------ */
void rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int rows, int d, float eps);
void rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                      int rows, int d);
void rope_forward(const float *x, const float *cos_table, const float *sin_table, float *out, int batch, int heads,
                  int t_len, int d, const long long *x_strides, const long long *out_strides);
void swiglu_forward(const float *a, const float *b, float *y, long long rows, long long cols, long long lda,
                    long long ldb);
void swiglu_backward(const float *a, const float *b, const float *dy, float *da, float *db, long long rows,
                     long long cols, long long lda, long long ldb, long long ldg);

/* ---- Adam / AdamW: one fused pass over a float32 parameter and its two moments ----------- */
void adam_update(float *p, const float *g, float *m, float *v, long long n, float lr, float beta1, float beta2,
                 float eps, float weight_decay, int decoupled, float step_size, float rsqrt_bc2);
/* the same over `count` tensors at once, split evenly across threads by value count */
void adam_update_many(float *const *p, float *const *g, float *const *m, float *const *v, const long long *n,
                      int count, float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                      float step_size, float rsqrt_bc2);

/* ---- gradient clipping over many tensors: Σ x² of all, and x ← x · factor for all --------------- */
double sum_of_squares_many(float *const *x, const long long *n, int count);
void scale_many(float *const *x, const long long *n, int count, float factor);

/* ---- int8 · int8ᵀ → int32: C (M×N) = A (M×K) · B (N×K)ᵀ, for quantised linear layers ---------- */
void matmul_int8(const signed char *A, const signed char *B, int *C, int M, int N, int K);

/* ---- int8 weights, float activations: y (M×N) = x (M×K) · (scale ⊙ W)ᵀ + bias, W int8 (N×K) with
 * one float scale per output row, bias NULL for none; for decoding, M small (linear_int8.c). The
 * numbered versions teach; threads: 0 = all (a small layer runs on the calling thread) */
void linear_int8_v1_scalar(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                           int M, int N, int K, int threads);
void linear_int8_v2_widened(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                            int M, int N, int K, int threads);
void linear_int8_v3_vnni(const float *x, const signed char *w, const float *scale, const float *bias, float *y,
                         int M, int N, int K, int threads);
void linear_int8_v4_two_digits(const float *x, const signed char *w, const float *scale, const float *bias,
                               float *y, int M, int N, int K, int threads);
void linear_int8_v5_row_order(const float *x, const signed char *w, const float *scale, const float *bias,
                              float *y, int M, int N, int K, int threads);
void linear_int8(const float *x, const signed char *w, const float *scale, const float *bias, float *y, int M, int N,
                 int K, int threads);  /* the backend's: v5 for 1–2 rows, v4 for more */
int linear_int8_has_vnni(void);  /* 1 when v3–v5 run on vpdpbusd, 0 when on their portable loop */
/* the memory's read bandwidth: a streaming sum of n floats on `threads` threads (0 = all) */
float stream_read(const float *x, long long n, int threads);

/* ---- bf16 · bf16 → float32: C (M×N) = A (M×K) · B (K×N), A and B bfloat16 (the top 16 bits of a
 * float32, as uint16), summed in float32 (matmul_bf16.c). v1 scalar, v2 vdpbf16ps on pairs of k,
 * v3 v2 with a register tile and packed blocks on every core; without AVX512_BF16, v2 and v3 run
 * v1's loop */
void matmul_bf16_v1_scalar(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K);
void matmul_bf16_v2_dpbf16(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K);
void matmul_bf16_v3_tiled(const unsigned short *A, const unsigned short *B, float *C, int M, int N, int K);
int matmul_bf16_has_avx512bf16(void);  /* 1 when v2 and v3 run on vdpbf16ps */
unsigned short bf16_from_float(float f);  /* round to nearest, ties to even; nan stays nan */
void bf16_from_floats(const float *x, unsigned short *out, long long n);
void bf16_to_floats(const unsigned short *x, float *out, long long n);

/* ---- how the library was built (for `minillm info` and the benchmarks) ---------------------- */
const char *minillm_build_flags(void);
const char *minillm_source_digest(void);
int minillm_max_threads(void);

#endif
