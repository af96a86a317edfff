"""selfheal services: thin loops over shared/."""
