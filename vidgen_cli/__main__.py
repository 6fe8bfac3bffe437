"""`python -m vidgen_cli ...` (what torchrun launches) is the same as `vidgen ...`."""

from vidgen_cli.main import main

main()
