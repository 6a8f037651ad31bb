"""Hydra configs. The file makes conf/ a package in the wheel (fer_longtail.conf), which is what Hydra
needs to read a config folder from an installed package (pkg://); nothing imports it."""
