"""Spiking networks: the torch LIF simulator, spike-noise accounting, calibration and conversion."""
