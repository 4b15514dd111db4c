"""Shared pytest setup: integration tests are marked and may be skipped with -m 'not integration'."""

import pytest


def pytest_collection_modifyitems(config, items):
    # everything under tests/integration is an integration test (real HTCondor in containers)
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
