"""Validation: k-fold cross-validation of recipes, the job's pace and budget, and the paired
significance tests selection uses."""
