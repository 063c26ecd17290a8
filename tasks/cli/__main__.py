"""`python -m tasks.cli`: the `slmforge` command without the console script."""

from tasks.cli.main import main

if __name__ == "__main__":
    main()
