"""The comparison report: analysis of a run folder, statistics, costs, and the markdown and HTML
renderers of report.md and report.html."""
