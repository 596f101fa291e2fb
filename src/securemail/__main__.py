"""``python -m securemail``: the same as the ``securemail`` command."""

from securemail.cli.main import main

main()
