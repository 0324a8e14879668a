"""Usage ledger (per job, project, partner) and the partners' guarantee ledger."""
