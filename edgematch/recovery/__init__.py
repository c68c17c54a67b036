"""When work fails: dead letters, replay, the publish journal, poison counting, step locks,
and handing back what a dead worker held."""
