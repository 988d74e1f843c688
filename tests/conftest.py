"""Shared pytest configuration: the mock upstream's fixtures are a plugin of its own package."""

pytest_plugins = ["mock_upstream.testing"]
