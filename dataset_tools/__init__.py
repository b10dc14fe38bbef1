"""dataset_tools: see README.md in this folder."""
