"""Target SDEs: the equation object, the TOML spec format, its expression language and the built-in systems."""
