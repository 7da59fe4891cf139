"""The reference inference server (`ballast serve`)."""
