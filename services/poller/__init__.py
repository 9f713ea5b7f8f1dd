"""The poller: Celery beat + workers that keep REACH live tasks in step with Kaltura (DESIGN section 2)."""
