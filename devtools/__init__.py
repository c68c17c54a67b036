"""Development tools: the PhotoDNA sandbox, the local stack and the demo. Not shipped: used
by scripts/, tests/ and bench/ from a source checkout."""
