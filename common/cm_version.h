/* cm_version: the project's version and the source revision a binary was
 * built from, in one place for every command (--version, run records).
 *
 * CM_VERSION is the release ("0.1"); the revision is `git describe --always
 * --dirty` of the checkout at build time, set by the Makefile
 * (-DC2KD_GIT_REV, on common/cm_version.c only), or "unknown" when the
 * sources are not a git checkout. */
#ifndef CM_VERSION_H
#define CM_VERSION_H

#define CM_VERSION "0.1"

/* The release, e.g. "0.1". */
const char *cm_version(void);
/* The git revision at build time, e.g. "cf2e149-dirty", or "unknown". */
const char *cm_git_revision(void);
/* "c2kd 0.1 (git cf2e149-dirty)": what a file records as its writer
 * (the shards' tool_version attribute, index.json's tool_version). */
const char *cm_tool_version(void);

#endif
