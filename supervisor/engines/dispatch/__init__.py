"""Starting launcher executions on Cloud Run."""
