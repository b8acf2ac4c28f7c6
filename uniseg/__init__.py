"""uniseg: one segmentation model from several datasets with conflicting label spaces (UniSeg)."""

__version__ = "0.1.0"

IGNORE = 255
"""Label value for pixels that carry no supervision (never 0: 0 is a real class)."""
