"""``python -m hashcli`` (also the entry point for ``torchrun ... -m hashcli``)."""

from hashcli.cli.app import main

if __name__ == "__main__":
    main()
