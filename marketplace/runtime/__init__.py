"""The runtime: resolves, fetches, verifies and unpacks installed gears, and runs
each of them in a sandboxed worker."""
