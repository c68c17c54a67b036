"""``python -m devtools.sandbox``: run the local PhotoDNA stand-in (``--help`` for options)."""

from devtools.sandbox.server import main

raise SystemExit(main())
