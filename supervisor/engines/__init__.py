"""The parts that talk to the outside: sources (W&B, Pub/Sub), trackers (Cloud Run executions,
Vertex AI CustomJobs) and dispatch (RunJob, CancelExecution). They do not import each other."""
