"""Standalone NumPy code printed from a derivation's steps."""
