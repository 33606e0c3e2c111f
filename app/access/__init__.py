"""Who may read reports and audit data, or send outcomes: API tokens, roles and the access log."""
