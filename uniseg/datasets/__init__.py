"""Datasets: adapters for the real datasets' official layouts (read in place through an index), the
synthetic world, and the dataset description and canonical layout of the rendered ones (see `layout`)."""
