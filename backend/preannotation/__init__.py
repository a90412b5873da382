"""Pre-annotation through the Label Studio API: a batch command, and jobs for imported tasks."""
