"""edgematch: a scanning worker for PhotoDNA Cloud Service edge hashes."""

__version__ = "0.1.0"
