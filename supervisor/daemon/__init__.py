"""The daemon: a thin shell of loops around the pure model (docs/architecture.md, Parts)."""
