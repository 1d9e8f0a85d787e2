/* cm_progress: a progress display for commands (not for libraries).
 * On a terminal: one line redrawn in place with a bar, rate and ETA.
 * Otherwise: a plain line at most every `interval` seconds. */
#ifndef CM_PROGRESS_H
#define CM_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

typedef struct cm_progress cm_progress;

cm_progress *cm_progress_create(FILE *out, const char *label, size_t total, double interval);
/* done: items finished so far (failed ones included); failed: of which failed;
 * extra: optional text shown after the counts (may be NULL). */
void cm_progress_update(cm_progress *p, size_t done, size_t failed, const char *extra);
/* Prints the final line (always). */
void cm_progress_finish(cm_progress *p, size_t done, size_t failed, const char *extra);
void cm_progress_destroy(cm_progress *p);
/* What the counts count ("steps"; default "") and whether "(N failed)" is
 * shown (default 1); `base`: items done before this process began, left out
 * of the rate and the ETA (a resumed run). */
void cm_progress_set_units(cm_progress *p, const char *unit, int show_failed, size_t base);
/* Prints one line of text (newline added), clearing an in-place progress
 * line first on a terminal; the progress is redrawn by the next update. */
void cm_progress_line(cm_progress *p, const char *text);

/* Monotonic clock in seconds. */
double cm_now(void);

#endif
