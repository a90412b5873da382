"""Selection: run a control's candidate plans within the budget and accept one only if it is
significantly better than the current version on the same held-out items."""
