"""ptbench.reports: results store, regression detection and report building."""
