"""Datasets: adapters for the real datasets' official layouts, the synthetic world, and the canonical
layout every source is converted into (see `layout`)."""
