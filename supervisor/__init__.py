"""launch-supervisor: turns W&B Launch queue items into Vertex AI CustomJobs through Cloud Run."""
