"""cryobench."""
