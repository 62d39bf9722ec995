"""Running notebooks: the catalog, headless runs and sweeps, records, the command line."""
