"""Fitting a network to an SDE: drift-diffusion matching, decoder solves, diffusion matching, training states."""
