/* sp_recipe: the names of the recipe's choices, one spelling each (see spectro.h). */
#include "spectro/spectro.h"

#include <string.h>

const char *sp_window_name(sp_window w) { return w == SP_WINDOW_HANN ? "hann" : "tukey25"; }
const char *sp_scale_name(sp_scale s) { return s == SP_SCALE_MAGNITUDE ? "magnitude" : "density"; }
const char *sp_norm_name(sp_norm n) { return n == SP_NORM_CLIP ? "clip" : "none"; }

int sp_window_parse(const char *s, sp_window *w)
{
    /* "tukey" and "tukey0.25" are older spellings of "tukey25" (the spectro command's
     * --window-fn and its .h5 attribute used them). */
    if (!strcmp(s, "tukey25") || !strcmp(s, "tukey") || !strcmp(s, "tukey0.25"))
        *w = SP_WINDOW_TUKEY25;
    else if (!strcmp(s, "hann"))
        *w = SP_WINDOW_HANN;
    else
        return -1;
    return 0;
}

int sp_scale_parse(const char *s, sp_scale *out)
{
    if (!strcmp(s, "density"))
        *out = SP_SCALE_DENSITY;
    else if (!strcmp(s, "magnitude"))
        *out = SP_SCALE_MAGNITUDE;
    else
        return -1;
    return 0;
}

int sp_norm_parse(const char *s, sp_norm *out)
{
    if (!strcmp(s, "none"))
        *out = SP_NORM_NONE;
    else if (!strcmp(s, "clip"))
        *out = SP_NORM_CLIP;
    else
        return -1;
    return 0;
}
