"""Shared pytest plugins: real PostgreSQL and Mosquitto servers started once per session."""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.mosquitto"]
