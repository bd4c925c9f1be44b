"""ddm_neuro: drift-diffusion matching of recurrent networks to SDEs."""
__version__ = "0.1.0"
