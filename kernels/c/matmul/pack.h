/* Packing: a panel of B and a block of A copied into slivers, in exactly the order the
 * micro-kernel reads them (v4 onwards). A sliver of B is NR columns: for each k, its NR values
 * side by side. A sliver of A is MR rows: for each k, its MR values side by side. The micro-
 * kernel then reads both with unit stride, and these routines are the only code that sees the
 * operands' strides, which is what makes a transposed operand free. Past an edge of the matrix
 * a sliver is padded with zeros, so the micro-kernel always computes a whole tile.
 * Each routine packs a team member's share of the slivers. pack_a and pack_b are kept out of
 * line: inlined into a version's loops, GCC's code for them was slower (attention's small
 * products with a transposed A showed it). */
#ifndef MINILLM_MATMUL_PACK_H
#define MINILLM_MATMUL_PACK_H
#include <string.h>
#include "blocking.h"
#include "share.h"

/* Full slivers first … last − 1 of `width` values whose values for one k lie side by side
 * (B with contiguous rows, or a transposed A: the weight gradient gᵀx), each k one short copy.
 *
 * Taken KCHUNK rows at a time across all the slivers, not sliver by sliver. The rows of a
 * 512-wide matrix are 2 KB apart, so a sliver's rows fall into 2 of L1's 64 sets (8 ways
 * each) and only 16 of its lines stay; the next sliver, whose values lie in the same lines, would fetch them
 * all again from L2. A chunk of 8 rows (16 KB of a 512-wide matrix) stays in L1 while every
 * sliver copies its 8 × width values out of it. */
#define KCHUNK 8

static void pack_contiguous(const float *src, long sk, int kc, int first, int last, int width, float *packed) {
    for (int k0 = 0; k0 < kc; k0 += KCHUNK) {
        const int k1 = min_int(k0 + KCHUNK, kc);
        for (int s = first * width; s < last * width; s += width)
            for (int k = k0; k < k1; ++k)
                memcpy(packed + (long)s * kc + k * width, src + k * sk + s, sizeof(float) * width);
    }
}

/* B[0:kc, 0:nc] (element (k, n) at B[k*sbk + n*sbn]) into slivers of NR columns. */
static __attribute__((noinline)) void
pack_b(const float *B, long sbk, long sbn, int kc, int nc, float *packed, team_t team) {
    int first, last;
    share(team, (nc + NR - 1) / NR, &first, &last);
    if (sbn == 1) {  /* the full slivers of contiguous rows; a partial one takes the loop below */
        const int full = min_int(last, nc / NR);
        if (first < full)
            pack_contiguous(B, sbk, kc, first, full, NR, packed);
        first = first > full ? first : full;
    }
    for (int s = first * NR; s < last * NR; s += NR) {
        const int width = min_int(nc - s, NR);
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *row = B + k * sbk + s * sbn;
            if (sbn == 1 && width == NR)
                memcpy(out, row, sizeof(float) * NR);
            else {
                for (int j = 0; j < width; ++j) out[j] = row[j * sbn];
                for (int j = width; j < NR; ++j) out[j] = 0.0f;
            }
            out += NR;
        }
    }
}

/* A[0:mc, 0:kc] (element (m, k) at A[m*sam + k*sak]) into slivers of MR rows. */
static __attribute__((noinline)) void
pack_a(const float *A, long sam, long sak, int mc, int kc, float *packed, team_t team) {
    int first, last;
    share(team, (mc + MR - 1) / MR, &first, &last);
    if (sam == 1) {  /* a transposed A: each k's MR values lie side by side */
        const int full = min_int(last, mc / MR);
        if (first < full)
            pack_contiguous(A, sak, kc, first, full, MR, packed);
        first = first > full ? first : full;
    }
    for (int s = first * MR; s < last * MR; s += MR) {
        const int height = min_int(mc - s, MR);
        float *out = packed + (long)s * kc;
        for (int k = 0; k < kc; ++k) {
            const float *col = A + s * sam + k * sak;
            for (int i = 0; i < height; ++i) out[i] = col[i * sam];
            for (int i = height; i < MR; ++i) out[i] = 0.0f;
            out += MR;
        }
    }
}

#endif
