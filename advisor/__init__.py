"""Meta's adaptation flowchart as data and the recommendation logic (no UI imports)."""
