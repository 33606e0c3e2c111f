"""Model packages: load (hash-checked), predict, explain, and turn predictions into cards."""
