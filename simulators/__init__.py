"""Simulated devices that satisfy the driver contracts: sensor physics, cooler, flat panel, filter
wheel, sky and a simulated clock, plus servers that expose them over real protocols."""
