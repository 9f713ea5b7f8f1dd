"""The poller: Celery beat + workers that keep REACH live tasks in step with Kaltura (docs/design.md section 2)."""
