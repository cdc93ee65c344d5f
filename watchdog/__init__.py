"""launch-watchdog: runs the W&B launch agent and stops it the moment its work is done or doomed."""
