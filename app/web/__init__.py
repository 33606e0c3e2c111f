"""Server-rendered pages: model cards and per-card explanations (no external assets)."""
