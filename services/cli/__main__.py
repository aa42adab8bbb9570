"""`python -m services.cli`: the `credits` command without its installed script."""

from services.cli.main import main

main()
