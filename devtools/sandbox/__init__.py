"""A local stand-in for PhotoDNA Cloud Service, for the demo, tests and benchmarks."""
