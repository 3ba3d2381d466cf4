"""The benchmark harness (`make bench`, `make bench-scale`; never part of `make test`): see run.py."""
