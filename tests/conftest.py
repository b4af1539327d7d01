"""Shared test setup. Fixture modules live in tests/fixtures/ and are listed here."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.app",
    "tests.fixtures.gears",
    "tests.fixtures.live",
    "tests.fixtures.s3",
    "tests.fixtures.browser",
]
