"""The PhotoDNA Cloud Service client: the status table, reading an answer, the 429 cooldown,
and the cache of recent match answers."""
