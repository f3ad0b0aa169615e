/* Test-vector helper: runs ggml's reference quantizers (quantize_row_*_ref) on f32 input.
 *
 * Not part of the build. Compile against a ggml source tree (see tests/data/README.md):
 *   cc -O2 -std=c11 -ffp-contract=off -ffunction-sections -I$GGML/include -I$GGML/src \
 *      tests/ggml_ref_driver.c $GGML/src/ggml-quants.c -Wl,--gc-sections -lm -o ggml_ref_driver
 * Usage: ggml_ref_driver TYPE < input.f32 > output.bin, TYPE one of q4_K q5_K q6_K q8_K q8_1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-common.h"
#include "ggml-quants.h"

/* ggml-quants.c refers to these; the reference quantizers used here never call them. */
void ggml_abort(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "ggml_abort at %s:%d (%s)\n", file, line, fmt);
    abort();
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TYPE < f32 > bytes\n", argv[0]);
        return 2;
    }
    size_t cap = 1 << 20, n = 0;
    float *x = malloc(cap * sizeof(float));
    size_t got;
    while ((got = fread(x + n, sizeof(float), cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            x = realloc(x, cap * sizeof(float));
        }
    }
    const char *t = argv[1];
    size_t bytes;
    void *y;
    if (!strcmp(t, "q4_K")) {
        bytes = n / QK_K * sizeof(block_q4_K);
        y = calloc(1, bytes);
        quantize_row_q4_K_ref(x, y, (int64_t)n);
    } else if (!strcmp(t, "q5_K")) {
        bytes = n / QK_K * sizeof(block_q5_K);
        y = calloc(1, bytes);
        quantize_row_q5_K_ref(x, y, (int64_t)n);
    } else if (!strcmp(t, "q6_K")) {
        bytes = n / QK_K * sizeof(block_q6_K);
        y = calloc(1, bytes);
        quantize_row_q6_K_ref(x, y, (int64_t)n);
    } else if (!strcmp(t, "q8_K")) {
        bytes = n / QK_K * sizeof(block_q8_K);
        y = calloc(1, bytes);
        quantize_row_q8_K_ref(x, y, (int64_t)n);
    } else if (!strcmp(t, "q8_1")) {
        bytes = n / QK8_1 * sizeof(block_q8_1);
        y = calloc(1, bytes);
        quantize_row_q8_1_ref(x, y, (int64_t)n);
    } else {
        fprintf(stderr, "unknown type %s\n", t);
        return 2;
    }
    fwrite(y, 1, bytes, stdout);
    return 0;
}
