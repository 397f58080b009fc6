"""The command lines (console scripts in pyproject.toml): siso-generate, siso-edit, siso-eval,
siso-sweep, siso-demo, siso-make-test-assets; `common` is what they share (one-line argument
errors, signals and exit codes, quiet libraries, the progress printer).
"""
