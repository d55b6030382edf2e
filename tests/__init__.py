import pytest

# Shared case modules: their asserts explain themselves like a test module's (before anything imports them).
pytest.register_assert_rewrite("tests.destinations.contract")
