"""``python -m devtools.sandbox``: run the local PhotoDNA stand-in (``--help`` for options)."""

from devtools.sandbox.cli import main

raise SystemExit(main())
