"""Where work comes from: the W&B queues (polled) and, later, Pub/Sub events."""
