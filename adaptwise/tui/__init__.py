"""The terminal UI (Textual): a thin client of the advisor logic and the experiment runner."""
