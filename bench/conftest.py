"""ptbench's benchmark suite. Fixtures and markers come from the `ptbench` pytest plugin."""
