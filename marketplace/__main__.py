"""``python -m marketplace``: the operator CLI (how ``marketplace serve`` starts workers)."""

from marketplace.cli import main

if __name__ == "__main__":
    main()
