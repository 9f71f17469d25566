"""Tables and reports built from result rows only."""
