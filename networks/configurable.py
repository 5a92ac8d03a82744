"""Objects stored in checkpoints as plain data: ``{"class_path": …, "init_args": {…}}``.

Architectures and reward-model encoders keep their constructor arguments in ``init_args``, so a
checkpoint records them without pickling classes (it stays loadable with
``torch.load(weights_only=True)``) and ``from_config`` rebuilds them.
"""

from __future__ import annotations

import importlib


class Configurable:
    init_args: dict = {}

    def to_config(self) -> dict:
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self.init_args)}

    @classmethod
    def from_config(cls, config):
        """``config`` as written by ``to_config`` (or already an instance) → an instance of a
        subclass of the class this is called on."""
        if isinstance(config, cls):
            return config
        module, _, name = config["class_path"].rpartition(".")
        target = getattr(importlib.import_module(module), name)
        if not (isinstance(target, type) and issubclass(target, cls)):
            raise TypeError(f"{config['class_path']} is not an {cls.__name__}")
        return target(**config.get("init_args", {}))
