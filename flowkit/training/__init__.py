"""Training: streams, the Trainer, run folders, evaluation and score fusion."""
