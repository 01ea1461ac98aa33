"""Browser tests of the served dashboard (a package, so its conftest does not clash with tests/ui's)."""
