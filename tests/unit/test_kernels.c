/* CPU-side checks of the CUDA backend's constructor: on a machine without a
 * GPU (or a build without CUDA) it fails cleanly with a message; with a GPU
 * it creates a context whose ops table is complete. */
#include <criterion/criterion.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"

static int have_gpu(void)
{
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(0, &err);
    if (!b) return 0;
    b->ops->destroy(b);
    return 1;
}

Test(kernels, create_without_gpu_fails_cleanly)
{
    if (have_gpu()) cr_skip_test("a CUDA device is present");
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(0, &err);
    cr_assert_null(b);
    cr_assert(strlen(err.msg) > 0, "an error message is expected");
    cr_assert(strstr(err.msg, "CUDA") != NULL, "message should name CUDA: %s", err.msg);
    cm_err err2 = {{0}};
    cr_assert_null(be_cuda_create_ex(0, 0, &err2));
    cr_assert(strlen(err2.msg) > 0);
    /* NULL err is allowed */
    cr_assert_null(be_cuda_create(0, NULL));
}

Test(kernels, queries_on_non_cuda_context_are_zero)
{
    be_ctx fake = {0};
    cr_assert_eq(be_is_cuda(&fake), 0);
    cr_assert_eq(be_is_cuda(NULL), 0);
    cr_assert_eq(be_cuda_peak_bytes(&fake), 0);
    cr_assert_eq(be_cuda_current_bytes(&fake), 0);
    cr_assert_eq(be_cuda_device_used_bytes(&fake), 0);
    cr_assert_str_eq(be_cuda_device_name(&fake), "");
    be_cuda_reset_peak(&fake);
}

Test(kernels, bad_device_index_fails)
{
    cm_err err = {{0}};
    cr_assert_null(be_cuda_create(1000, &err));
    cr_assert(strlen(err.msg) > 0);
}

Test(kernels, gpu_context_has_every_op)
{
    if (!have_gpu()) cr_skip_test("no CUDA device");
    cm_err err = {{0}};
    be_ctx *b = be_cuda_create(0, &err);
    cr_assert_not_null(b, "%s", err.msg);
    cr_assert(be_is_cuda(b));
    const void *const *p = (const void *const *)b->ops;
    size_t n = sizeof(be_ops) / sizeof(void *);
    for (size_t i = 0; i < n; i++) cr_assert_not_null(p[i], "op slot %zu is empty", i);
    void *d = b->ops->alloc(b, 1024);
    cr_assert_not_null(d);
    cr_assert_geq(be_cuda_peak_bytes(b), 1024);
    b->ops->free(b, d);
    cr_assert_eq(b->ops->status(b, &err), 0, "%s", err.msg);
    b->ops->destroy(b);
}
