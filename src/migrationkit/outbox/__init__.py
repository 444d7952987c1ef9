"""The pipeline: source -> batch -> sink -> acknowledge, with retries and dead letters."""
