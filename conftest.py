"""Root pytest configuration: the real-infrastructure fixtures for every package's tests."""

pytest_plugins = ["crm_cli.testing"]
