"""Using a trained model: `uniseg predict` (`predictor`) and the WildDash 2 submission format (`submission`)."""
