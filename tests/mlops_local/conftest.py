"""Fixtures shared by tests/mlops_local: the engine tests' stand-in (module-scoped)."""
from tests.mlops_local.engine_stand import stand  # noqa: F401  (a fixture, offered to every module here)
