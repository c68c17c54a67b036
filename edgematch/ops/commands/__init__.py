"""The ``edgematch`` commands, one module per concern.

Each module defines click commands (or a group of actions) and nothing else: parsing,
printing and exit status, calling into the package that does the work. A command is
listed in ``edgematch.ops.cli.COMMANDS``, which loads its module only when it runs; so a
module here imports what its commands need at the top, but never ``edgematch.tasks``
there (importing it configures Celery) — see docs/development.md, "Adding a command".
"""
