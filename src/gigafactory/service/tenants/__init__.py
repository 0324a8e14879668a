"""Partners, programmes and projects: the share tree, with project budgets."""
