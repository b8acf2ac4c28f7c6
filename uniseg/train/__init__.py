"""Training: the loop (`engine`), its data (`loader`, `transforms`), checkpoints, the schedule and progress
log (`trainlog`), distributed set-up, and the pretrain stage's stand-in for ImageNet (`pretrain`)."""
