"""Following what was started: Cloud Run executions and Vertex AI CustomJobs."""
