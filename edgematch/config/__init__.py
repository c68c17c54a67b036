"""Settings and Celery configuration."""
