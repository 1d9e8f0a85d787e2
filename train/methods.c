/* methods: the table of methods (methods.h). Adding a method: its file
 * train/method_NAME.c + .h (train/method.h says what a definition holds),
 * one row here, and a value of tr_method in system.h when --method chooses
 * it (docs/ARCHITECTURE.md, "adding a method"). */
#include "train/methods.h"

#include <string.h>

#include "train/method_c2kd.h"
#include "train/method_kd.h"
#include "train/method_nkd.h"
#include "train/method_none.h"
#include "train/method_pretrain.h"
#include "train/method_review.h"
#include "train/method_shake.h"

/* THE table: the --method choices, in the order of tr_method. */
#define METHOD_ROWS(X) X(none) X(kd) X(nkd) X(c2kd) X(shake) X(review)

typedef struct row {
    const char *name;
    const tr_method_def *def;
} row;

#define ROW(n) {#n, &tr_method_##n},
#define CHOICE(n) "|" #n
static const row table[] = {
    METHOD_ROWS(ROW)
    {"pretrain", &tr_method_pretrain}, /* --pretrain */
};
const char tr_methods_choices[] = METHOD_ROWS(CHOICE);

#define N_ROWS ((int)(sizeof table / sizeof *table))
#define N_OPTIONS (N_ROWS - 1) /* pretrain, last, is no --method choice */
_Static_assert(TR_REVIEW < sizeof table / sizeof *table - 1, "a row for every tr_method constant");

int tr_methods_options(void)
{
    return N_OPTIONS;
}

int tr_methods_count(void)
{
    return N_ROWS;
}

const tr_method_def *tr_methods_row(int i, const char **name)
{
    if (i < 0 || i >= N_ROWS)
        return NULL;
    if (name)
        *name = table[i].name;
    return table[i].def;
}

const tr_method_def *tr_methods_find(const char *name)
{
    for (int i = 0; i < N_ROWS; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].def;
    return NULL;
}

const char *tr_methods_name(tr_method m)
{
    return (int)m >= 0 && (int)m < N_OPTIONS ? table[m].name : NULL;
}

const char *tr_methods_name_of(const tr_method_def *d)
{
    for (int i = 0; i < N_ROWS; i++)
        if (table[i].def == d)
            return table[i].name;
    return NULL;
}

const tr_method_def *tr_methods_of(const tr_config *c)
{
    if (c->pretrain)
        return &tr_method_pretrain;
    return (int)c->method >= 0 && (int)c->method < N_OPTIONS ? table[c->method].def : NULL;
}
