"""Helpers every engine's API calls share: deadlines, retries, and reporting each call."""
