"""The scheduler loop: one leader at a time runs the scheduling core against the database
and drives an executor (DESIGN.md §4 and §10)."""
