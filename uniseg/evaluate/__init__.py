"""Evaluation: the scored tasks (`evaluation`), the protocols and scorers (`protocols`), the union readout
(`readout`) and abstention (`abstain`)."""
