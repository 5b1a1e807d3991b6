"""`python -m genlab` runs the same command-line app as the `genlab` script."""

from genlab.cli import main

if __name__ == "__main__":
    main()
