"""Reports for safety officers, aggregated in SQL from the audit store."""
