"""The bank demo domain used by `make demo`, the docs, the tests and the benchmarks."""
