/* backend: what every backend shares (the defaults of be_options). */
#include <string.h>

#include "kernels/kernels.h"

void be_options_default(be_options *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 0;
    o->device = 0;
    o->tf32 = 1;
    o->bn = BE_BN_OWN;
    o->workspace_mb = 1024;
    o->cudnn_find = 1;
    o->profile = 0;
}
