"""Helpers the test modules share: ports, hash bytes, result builders, pipelines, tiers.

Imported as ``tests.support.<module>`` (pytest puts the repository root on ``sys.path``,
see ``pythonpath`` in pyproject.toml). Fixtures stay in the conftest files; what lives here
is what a fixture cannot carry well: constants, plain builders and the hooks' machinery.
"""
