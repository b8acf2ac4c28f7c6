"""Experiments over the pipeline: the paper's grid on real data (grid.py) and the seeds headline of the
embedded benchmark (seeds.py runs the arms, headline.py summarises them). One command drives both:
`python -m uniseg.experiments queue|table|seeds|headline` (__main__.py)."""
