"""The model: backbones (the encoder contract and one module per family), the segmentation model and its
classifiers (`segmodel`: the model file), the losses, and what the model is fed (`inputs`)."""
