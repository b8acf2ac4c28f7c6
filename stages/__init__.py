"""DVC stages: one thin Typer command per stage, run as `python -m stages.<name>`."""
