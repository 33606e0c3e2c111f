"""Server-rendered pages linked from risk cards: model cards and per-card explanations."""
