"""Candidates: recipes built from the ground truth, each returned with out-of-fold probabilities
(validation/crossval.py) so selection can compare them item by item."""
