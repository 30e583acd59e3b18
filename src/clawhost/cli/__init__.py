"""The ``clawhost`` command line (the ``cli`` extra: click, rich and tomlkit).

One module per concern: ``app`` (the command tree and global options) and ``state``
(what every command shares), ``inventory`` (what is installed, read without importing
plugin code), ``listing`` (``plugins list`` and ``inspect``), ``toggle``
(``enable``/``disable``), ``install`` (``install``, ``update``, ``uninstall``, with
``spec``, ``archives``, ``fetch``, ``wheels``, ``installer`` and ``conflicts`` behind it),
``create`` (the scaffold), ``harness`` (``plugins test``), ``doctor``, ``gateway``,
``probes`` (checks in subprocesses) and ``render`` (tables and JSON). ``_probe`` runs one
plugin's conformance check in a subprocess and needs neither click nor rich, which is why
this package's ``__init__`` imports nothing.
"""
