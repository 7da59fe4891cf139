"""Typed API: the custom resources' spec and status, and the trainer contracts. Imports nothing internal."""
