"""Contract test suites for mpsearch's extension points (profiles, explorers, ...).

Each suite is plain functions that raise :class:`ContractFailure` (an AssertionError) with a
message naming what broke, so it runs under pytest or from a script.
"""
