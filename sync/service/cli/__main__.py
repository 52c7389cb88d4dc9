"""`python -m sync.service.cli`, the same as the `dispatch-connector` script."""

from sync.service.cli import main

if __name__ == "__main__":
    main()
