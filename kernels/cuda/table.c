/* table (CUDA): be_ops filled by name from kernels/cuda/cuda_ops.h, by family in
 * the order of the files (mirrored by kernels/cpu/table.c). Plain C (designated
 * initializers), so no entry depends on its position. tools/check_structure.py
 * checks that every entry of be_ops is here. */
#include "kernels/cuda/cuda_ops.h"

const be_ops cu_ops_table = {
    .name = "cuda",
    /* context.cu */
    .destroy = cu_destroy,
    .status = cu_status,
    .sync = cu_sync,
    .alloc = cu_alloc,
    .free = cu_free,
    .to_device = cu_to_device,
    .to_host = cu_to_host,
    .zero = cu_zero,
    .copy = cu_copy,
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
    .stage_copy = cu_stage_copy,
    .stage_wait = cu_stage_wait,
    .stage_release = cu_stage_release,
    .input_threads = cu_input_threads,
    .native_stream = cu_native_stream,
    .device_name = cu_device_name,
    .stats = cu_stats,
    .reset_peak = cu_reset_peak,
    .profile_reset = cu_profile_reset,
    .profile_data = cu_profile_data,
    /* conv.cu */
    .conv_fwd = cu_conv_fwd,
    .conv_bwd_data = cu_conv_bwd_data,
    .conv_bwd_filter = cu_conv_bwd_filter,
    /* batchnorm.cu */
    .bn_fwd_train = cu_bn_fwd_train,
    .bn_fwd_eval = cu_bn_fwd_eval,
    .bn_bwd = cu_bn_bwd,
    .bn_stats_partial = cu_bn_stats_partial,
    .bn_stats_finalize = cu_bn_stats_finalize,
    .bn_fwd_apply = cu_bn_fwd_apply,
    .bn_bwd_partial = cu_bn_bwd_partial,
    .bn_bwd_apply = cu_bn_bwd_apply,
    /* activation.cu */
    .relu_fwd = cu_relu_fwd,
    .relu_bwd = cu_relu_bwd,
    .leaky_fwd = cu_leaky_fwd,
    .leaky_bwd = cu_leaky_bwd,
    /* pool.cu */
    .maxpool_fwd = cu_maxpool_fwd,
    .maxpool_bwd = cu_maxpool_bwd,
    .avgpool_fwd = cu_avgpool_fwd,
    .avgpool_bwd = cu_avgpool_bwd,
    /* linear.cu */
    .linear_fwd = cu_linear_fwd,
    .linear_bwd = cu_linear_bwd,
    /* elementwise.cu */
    .add = cu_add,
    .axpy = cu_axpy,
    .scale = cu_scale,
    /* loss.cu */
    .ce = cu_ce,
    .kl = cu_kl,
    .nt_kl = cu_nt_kl,
    .nkd = cu_nkd,
    /* selection.cu */
    .kendall_select = cu_kendall_select,
    .argmax = cu_argmax,
    /* review.cu */
    .resize_fwd = cu_resize_fwd,
    .resize_bwd = cu_resize_bwd,
    .adapool_fwd = cu_adapool_fwd,
    .adapool_bwd = cu_adapool_bwd,
    .att_fwd = cu_att_fwd,
    .att_bwd = cu_att_bwd,
    .mse = cu_mse,
    /* sgd.cu */
    .sgd = cu_sgd,
    /* input.cu */
    .prep_spec = cu_prep_spec,
    .prep_frames = cu_prep_frames,
};
