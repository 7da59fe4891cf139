"""Kopf handlers, one module per kind. Importing this package registers them all."""

from ballast.handlers import finetunepool, finetunerun, modelrelease, startup

__all__ = ["finetunepool", "finetunerun", "modelrelease", "startup"]
