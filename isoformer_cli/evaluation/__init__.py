"""Agreement between predicted and observed expression: metrics, tables and plots (no torch)."""
