"""Demo data for `tre up --demo`."""
