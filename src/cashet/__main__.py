"""``python -m cashet``: the same command line as ``cashet``."""

from cashet.cli import main

if __name__ == "__main__":
    main(prog_name="cashet")
