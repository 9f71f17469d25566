"""Checkout adapters: each module runs one method's official inference CLI from the user's checkout
in that method's own environment (the shared machinery is `base.ExternalMethod`). DiffTalk, which has
no runnable CLI, is read from generated frames instead (baselines.results)."""

from .base import ExternalMethod, ExternalOptions

__all__ = ["ExternalMethod", "ExternalOptions"]
