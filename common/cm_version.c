/* cm_version: see cm_version.h. */
#include "common/cm_version.h"

#ifndef C2KD_GIT_REV
#define C2KD_GIT_REV "unknown"
#endif

const char *cm_version(void)
{
    return CM_VERSION;
}

const char *cm_git_revision(void)
{
    return C2KD_GIT_REV[0] ? C2KD_GIT_REV : "unknown";
}

const char *cm_tool_version(void)
{
    return "c2kd " CM_VERSION " (git " C2KD_GIT_REV ")";
}
