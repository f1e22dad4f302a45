"""`python -m flowkit` is the same as the `flowkit` command."""

from flowkit.cli import main

if __name__ == "__main__":
    main()
