"""Reading raw task files, tokenizing, collating, sampling, metrics and submissions."""
