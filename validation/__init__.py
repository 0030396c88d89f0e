"""Measured datasets; the small published ones ship with vsim as the package vsim.datasets."""
