"""Stage-3 fine-tuning from the backend: `python -m backend finetune` (cli.py) and, in the server, Label
Studio's "Start Training" (service.py: a job on the live STAGE3_DIR, published as a new model version)."""
