"""marketplace: the server side of Gears (registry, catalog, review, engine, runtime)."""
