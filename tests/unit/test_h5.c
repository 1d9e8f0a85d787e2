/* h5/: numeric attributes written and read back (h5py reads the same values:
 * tests/oracle/test_store.py, test_train_resume.py), the refusals of a value
 * of another shape or class, and the OS cause of a failed call. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5/h5.h"

static char path[256];

static void mk(void)
{
    snprintf(path, sizeof path, "/tmp/c2kd_test_h5_%d.h5", (int)getpid());
}

static void rm(void)
{
    unlink(path);
}

Test(h5, numeric_attributes_round_trip_and_refusals, .init = mk, .fini = rm)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    double d = 0.125;
    int64_t i = -7;
    uint64_t u[4] = {1, 2, 3, UINT64_MAX};
    int32_t small = 5;
    cr_assert_eq(h5_attr_write(f, "d", H5T_NATIVE_DOUBLE, 0, &d), 0);
    cr_assert_eq(h5_attr_write(f, "i", H5T_STD_I64LE, 0, &i), 0);
    cr_assert_eq(h5_attr_write(f, "u", H5T_NATIVE_UINT64, 4, u), 0);
    cr_assert_eq(h5_attr_write(f, "s", H5T_NATIVE_INT32, 0, &small), 0);
    cr_assert_eq(h5_attr_write(f, "d", H5T_NATIVE_DOUBLE, 0, &d), -1, "an attribute is written once");
    cr_assert_eq(h5_attr_write(f, "neg", H5T_NATIVE_DOUBLE, -1, &d), -1);
    cr_assert_eq(H5Fclose(f), 0);

    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    double d2 = 0;
    int64_t i2 = 0;
    uint64_t u2[4] = {0};
    int32_t s2 = 0;
    cr_expect_eq(h5_attr_read(f, "d", H5T_NATIVE_DOUBLE, 1, &d2), 0);
    cr_expect_eq(d2, 0.125);
    cr_expect_eq(h5_attr_read(f, "i", H5T_NATIVE_INT64, 0, &i2), 0, "n = 0 reads a scalar as n = 1");
    cr_expect_eq(i2, -7);
    cr_expect_eq(h5_attr_read(f, "u", H5T_NATIVE_UINT64, 4, u2), 0);
    cr_expect_eq(memcmp(u, u2, sizeof u), 0);
    cr_expect_eq(h5_attr_read(f, "s", H5T_NATIVE_INT32, 1, &s2), 0);
    cr_expect_eq(s2, 5);
    int64_t g = 0;
    cr_expect_eq(h5_attr_get_int(f, "s", &g), 0);
    cr_expect_eq(g, 5);
    cr_expect_eq(h5_attr_get_int(f, "d", &g), -1, "a float is not an integer");
    cr_expect_eq(h5_attr_read(f, "nope", H5T_NATIVE_DOUBLE, 1, &d2), -1, "absent");
    cr_expect_eq(h5_attr_read(f, "i", H5T_NATIVE_DOUBLE, 1, &d2), -2, "another class");
    cr_expect_eq(h5_attr_read(f, "u", H5T_NATIVE_UINT64, 3, u2), -2, "another count");
    cr_expect_eq(h5_attr_read(f, "d", H5T_NATIVE_DOUBLE, 2, u2), -2, "another count");
    H5Fclose(f);
    h5_quiet_end(&q);
}

Test(h5, cause_names_the_os_reason)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    hid_t f = H5Fcreate("/nonexistent-dir-c2kd/x.h5", H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_lt(f, 0);
    char cause[256];
    int e = h5_cause(cause, sizeof cause);
    h5_quiet_end(&q);
    cr_expect_eq(e, ENOENT, "%d %s", e, cause);
    cr_expect_str_eq(cause, strerror(ENOENT));
}

Test(h5, half_type_is_ieee_binary16)
{
    hid_t t = h5_half_type();
    cr_assert_geq(t, 0);
    size_t spos, epos, esize, mpos, msize;
    cr_assert_geq(H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize), 0);
    cr_expect_eq(H5Tget_size(t), 2);
    cr_expect(spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10);
    cr_expect_eq(H5Tget_ebias(t), 15);
    cr_expect_eq(H5Tget_order(t), H5T_ORDER_LE);
    H5Tclose(t);
}
