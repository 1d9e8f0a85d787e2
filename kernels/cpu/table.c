/* table (CPU): be_ops filled by name from kernels/cpu/cpu_ops.h, by family in
 * the order of the files (mirrored by kernels/cuda/table.c).
 * tools/check_structure.py checks that every entry of be_ops is here (the
 * optional ones excepted). */
#include "kernels/cpu/cpu_ops.h"

const be_ops cpu_ops_table = {
    .name = "cpu",
    /* context.c */
    .destroy = cpu_destroy,
    .status = cpu_status,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .zero = cpu_zero,
    .copy = cpu_memcpy,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_free,
    .stage_copy = cpu_stage_copy,
    .stage_wait = cpu_stage_nothing,
    .stage_release = cpu_stage_nothing,
    .input_threads = cpu_input_threads,
    /* no native stream, device name, statistics or profile (optional entries) */
    /* conv.c */
    .conv_fwd = cpu_conv_fwd,
    .conv_bwd_data = cpu_conv_bwd_data,
    .conv_bwd_filter = cpu_conv_bwd_filter,
    /* batchnorm.c */
    .bn_fwd_train = cpu_bn_fwd_train,
    .bn_fwd_eval = cpu_bn_fwd_eval,
    .bn_bwd = cpu_bn_bwd,
    .bn_stats_partial = cpu_bn_stats_partial,
    .bn_stats_finalize = cpu_bn_stats_finalize,
    .bn_fwd_apply = cpu_bn_fwd_apply,
    .bn_bwd_partial = cpu_bn_bwd_partial,
    .bn_bwd_apply = cpu_bn_bwd_apply,
    /* activation.c */
    .relu_fwd = cpu_relu_fwd,
    .relu_bwd = cpu_relu_bwd,
    .leaky_fwd = cpu_leaky_fwd,
    .leaky_bwd = cpu_leaky_bwd,
    /* pool.c */
    .maxpool_fwd = cpu_maxpool_fwd,
    .maxpool_bwd = cpu_maxpool_bwd,
    .avgpool_fwd = cpu_avgpool_fwd,
    .avgpool_bwd = cpu_avgpool_bwd,
    /* linear.c */
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    /* elementwise.c */
    .add = cpu_add,
    .axpy = cpu_axpy,
    .scale = cpu_scale,
    /* loss.c */
    .ce = cpu_ce,
    .kl = cpu_kl,
    .nt_kl = cpu_nt_kl,
    .nkd = cpu_nkd,
    /* selection.c */
    .kendall_select = cpu_kendall_select,
    .argmax = cpu_argmax,
    /* review.c */
    .resize_fwd = cpu_resize_fwd,
    .resize_bwd = cpu_resize_bwd,
    .adapool_fwd = cpu_adapool_fwd,
    .adapool_bwd = cpu_adapool_bwd,
    .att_fwd = cpu_att_fwd,
    .att_bwd = cpu_att_bwd,
    .mse = cpu_mse,
    /* sgd.c */
    .sgd = cpu_sgd,
    /* input.c */
    .prep_spec = cpu_prep_spec,
    .prep_frames = cpu_prep_frames,
};
