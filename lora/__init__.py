"""lora: see README.md in this folder."""
