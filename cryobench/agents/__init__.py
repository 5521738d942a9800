"""cryobench agents: the interface (base), the registry, and the built-in zoo."""
