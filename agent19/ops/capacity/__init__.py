"""Capacity planning from measured growth: samples, fits, projections and the capacity plan document."""
