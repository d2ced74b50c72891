"""One training loop for every model: seeded epoch plan, non-finite guard, early stopping, resume."""
