# Unit tests are declared by each module's module.mk (UNIT_TESTS += ...).
# Oracle tests: tests/oracle/test_*.py, run by `make test-oracle`.
