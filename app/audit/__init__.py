"""The audit store: pseudonymous keys and the hash chain that makes records tamper-evident."""
