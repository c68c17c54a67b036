"""Two ways people pace the PhotoDNA API today, as small Celery apps of their own.

Both run on the benchmark's private Redis (as broker, and to record what they did) and
call the sandbox over real HTTP with the same key as edgematch. Each counts its own
requests and 429s; the sandbox counts them too.
"""
