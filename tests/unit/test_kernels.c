/* CPU-side checks of the CUDA backend's constructor: on a machine without a
 * GPU (or a build without CUDA) it fails cleanly with a message; with a GPU
 * it creates a context whose ops table is complete. */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/kernels.h"

static int have_gpu(void)
{
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(NULL, &err);
    if (!b) return 0;
    b->ops->destroy(b);
    return 1;
}

Test(kernels, create_without_gpu_fails_cleanly)
{
    if (have_gpu()) cr_skip_test("a CUDA device is present");
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(NULL, &err);
    cr_assert_null(b);
    cr_assert(strlen(err.msg) > 0, "an error message is expected");
    cr_assert(strstr(err.msg, "CUDA") != NULL, "message should name CUDA: %s", err.msg);
    cm_err err2 = {{0}};
    be_options o;
    be_options_default(&o);
    o.tf32 = 0;
    cr_assert_null(be_cuda_create(&o, &err2));
    cr_assert(strlen(err2.msg) > 0);
    /* NULL err is allowed */
    cr_assert_null(be_cuda_create(NULL, NULL));
}

/* The device queries are optional entries of the table: a backend without a
 * device (the CPU) has none of them. */
Test(kernels, queries_on_non_cuda_context_are_absent)
{
    cm_err err = {{0}};
    be_ctx *b = be_cpu_create(1, &err);
    cr_assert_not_null(b, "%s", err.msg);
    cr_assert_str_neq(b->ops->name, "cuda");
    cr_assert_null(b->ops->device_name);
    cr_assert_null(b->ops->stats);
    cr_assert_null(b->ops->reset_peak);
    cr_assert_null(b->ops->profile_reset);
    cr_assert_null(b->ops->profile_data);
    b->ops->destroy(b);
}

Test(kernels, bad_device_index_fails)
{
    cm_err err = {{0}};
    be_options o;
    be_options_default(&o);
    o.device = 1000;
    cr_assert_null(be_cuda_create(&o, &err));
    cr_assert(strlen(err.msg) > 0);
}

Test(kernels, gpu_context_has_every_op)
{
    if (!have_gpu()) cr_skip_test("no CUDA device");
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(NULL, &err);
    cr_assert_not_null(b, "%s", err.msg);
    cr_assert_str_eq(b->ops->name, "cuda");
    const void *const *p = (const void *const *)b->ops;
    size_t n = sizeof(be_ops) / sizeof(void *);
    for (size_t i = 0; i < n; i++) cr_assert_not_null(p[i], "op slot %zu is empty", i);
    void *d = b->ops->alloc(b, 1024);
    cr_assert_not_null(d);
    be_stats st;
    b->ops->stats(b, &st);
    cr_assert_geq(st.peak_bytes, 1024);
    b->ops->free(b, d);
    cr_assert_eq(b->ops->status(b, &err), 0, "%s", err.msg);
    b->ops->destroy(b);
}
