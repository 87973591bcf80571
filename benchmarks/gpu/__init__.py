"""The GPU check (issue 16): fixture parity on the device, the 7b-shaped model's component and
per-image times, and the backend served on the device, in one command (benchmarks/gpu_check.sh).
`--dry-run` runs the same path on the CPU with the small model."""
