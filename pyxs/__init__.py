"""pyxs: a pure-Python XenStore client.

>>> import pyxs
>>> with pyxs.Client() as c:                              # doctest: +SKIP
...     c.write(b"/vm/1/state", b"running")
"""

__version__ = "0.5.0.dev0"
