"""Presentation: Markdown reports and figures, from the files the pipeline wrote (no model code)."""
