"""The stream suite's fixtures, found by pytest here so test modules need not import them by name."""

from tests.stream import central  # noqa: F401  (a fixture: pytest collects it from this module)
