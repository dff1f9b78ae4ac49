"""Training: objectives, schedules, the loop, checkpoints."""
