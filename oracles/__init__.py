"""Oracles: a batch of sequences in, energies (lower is better) out. The guide is docs/oracles.md.

``oracles.PythonFunction`` and ``oracles.ExternalProcess`` (from :mod:`oracles.custom`) are
importable from here, so a config can name ``class_path: oracles.ExternalProcess``; they load on
first use, so ``import oracles.transforms`` stays light.
"""

_CUSTOM = ("PythonFunction", "ExternalProcess")


def __getattr__(name: str):
    if name in _CUSTOM:
        from oracles import custom

        return getattr(custom, name)
    raise AttributeError(f"module 'oracles' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_CUSTOM])
